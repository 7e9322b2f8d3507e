"""Missing-data corruptions: whole modalities removed, or time steps masked inside a modality's sequence.

| corruption | kind | parameters (valid range) | identity at | what it does |
|---|---|---|---|---|
| ``remove_modalities`` | missing | ``modalities``: not all | ``()`` | removes them where another remains |
| ``random_modality_missing`` | missing | ``rate`` in [0, 1) | ``rate=0`` | drops each modality w.p. r, >= 1 kept |
| ``exact_modality_missing`` | missing | ``rate`` in [0, 1) | ``rate=0`` | drops exactly a fraction r, >= 1 kept |
| ``frame_mask`` | feature | ``rate`` in [0, 1); T > 1 | ``rate=0`` | zeroes each valid step w.p. ``rate`` |
| ``frame_block_mask`` | feature | ``rate`` in [0, 1); T > 1 | ``rate=0`` | zeroes a block of round(r * length) steps |

All take ``modalities`` (default: all). Removal uses :meth:`Batch.drop` (``present`` cleared, features zeroed).

Both missing-type corruptions act on each sample's *available* modalities (real data may lack some already,
see the ``present`` mask of npz files), and neither leaves a sample that had a modality without one:

- ``remove_modalities``: a sample whose available modalities are all among the named ones would be left
  empty; it is returned unchanged instead (an all-missing row is no input a method is obliged to accept).
  It is *not* a sample of "these modalities removed", so a protocol must not score it as one:
  ``fixed_pattern`` leaves it out of that condition's metric (``Condition.evaluated``).
- ``random_modality_missing``: see the rejection rule below; the redraw checks the sample's own modalities.

Frame masks keep ``present`` and ``lengths`` unchanged: the modality is there but some steps carry nothing.

Text steps are zeroed like audio/vision frames. MMSA/LNLN replace masked token ids with ``[UNK]`` before
BERT; with precomputed features, zeroing the step's feature vector is the feature-level analogue.

Rejection rule of ``random_modality_missing`` (GCNet/CPM-Net keep at least one view): a whole row is redrawn
until it keeps one of its present modalities. ``rate`` is therefore the drop probability *before*
conditioning; with M modalities the realised missing fraction is ``rate (1 - rate^(M-1)) / (1 - rate^M)``
(0.54 for rate 0.7 and M = 3).

``exact_modality_missing`` (GCNet/CPM-Net's ``random_mask``/``get_sn`` semantics, drawn exactly instead of by
rejection): over the batch it is applied to (the whole test split, as the evaluator applies it), a fraction
``rate`` of the targeted (sample, modality) slots that are present is removed, rounded to whole slots, with at
least one modality kept per sample. Each sample first keeps one guaranteed slot, drawn uniformly among its
present targeted modalities (unless an untargeted present modality already keeps it non-empty); then
``round((1 - rate) * P) - guaranteed`` further slots are kept, drawn uniformly without replacement from the
remaining ``P - guaranteed`` present targeted slots (P = present targeted slots). The realised missing fraction
is therefore ``rate`` up to ``1 / (2P)``, as long as ``rate <= (M - 1) / M``; above that no split can lose more
while keeping one modality per sample, so every sample keeps exactly one (CPM-Net's one-hot branch, taken when
``1 - rate <= 1 / M``) and the realised fraction is ``(M - 1) / M`` (0.667 for rate 0.7 and M = 3, where GCNet
stops: its code asserts rate <= 0.7).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from corruptions.spec import Range, corruption, uniform, valid_steps
from harness.data import Batch

RATE = Range(0.0, 1.0, hi_open=True)
MAX_REDRAWS = 10_000  # P(row empty) = rate^M < 1, so this is never reached for rate < 1 in practice


def _not_everything(params: Mapping[str, Any], seq_lens: Mapping[str, int]) -> None:
    # Removing every modality would leave every sample unchanged (rule above): an identity posing as removal.
    if set(params["modalities"]) == set(seq_lens):
        raise ValueError(f"remove_modalities: removing every modality {list(seq_lens)} leaves nothing; "
                         "at least one modality must remain")


@corruption("remove_modalities", family="missing", kind="missing", params={}, example={"modalities": ("audio",)},
            zero={"modalities": ()}, random=False, extra_check=_not_everything,
            invalid=(({"modalities": None}, "removing every modality .* at least one modality must remain"),))
def remove_modalities(batch: Batch, generator: torch.Generator, *, modalities: tuple[str, ...]) -> Batch:
    """Remove the named modalities from every sample that keeps another one (MMIN's fixed missing patterns)."""
    keep = torch.tensor([m not in modalities for m in batch.modalities], dtype=torch.bool,
                        device=batch.present.device).expand_as(batch.present)
    # a sample with nothing but the named modalities stays as it is (see the module docstring)
    emptied = batch.present.any(1) & ~(batch.present & keep).any(1)  # [N]
    return batch.drop(keep | emptied.view(-1, 1))


def keeps_any(batch: Batch, modalities: tuple[str, ...]) -> Tensor:
    """bool ``[N]``: samples that have at least one of ``modalities`` available (what a pattern can score)."""
    columns = [batch.modalities.index(m) for m in modalities]
    return batch.present[:, columns].any(1)


def draw_modality_keep(generator: torch.Generator, present: Tensor, rate: float, targets: Tensor) -> Tensor:
    """bool ``[N, M]`` keep mask: each targeted (``targets`` bool ``[M]``) modality dropped w.p. ``rate``.

    Draws U[0, 1) ``[N, M]`` and keeps where ``u >= rate``; rows that keep none of their present modalities
    are redrawn whole, in row order, until they keep one.
    """
    n, m = present.shape
    targets = targets.to(present.device).view(1, m)
    keep = (uniform(generator, (n, m), present.device) >= rate) | ~targets
    has_any = present.any(1)
    for _ in range(MAX_REDRAWS):
        empty = has_any & ~(keep & present).any(1)
        rows = empty.nonzero().squeeze(1)
        if len(rows) == 0:
            return keep
        keep[rows] = (uniform(generator, (len(rows), m), present.device) >= rate) | ~targets
    raise RuntimeError(f"random_modality_missing: could not keep a modality in {MAX_REDRAWS} redraws")


@corruption("random_modality_missing", family="missing", kind="missing", params={"rate": RATE},
            example={"rate": 0.5}, zero={"rate": 0.0})
def random_modality_missing(batch: Batch, generator: torch.Generator, *, rate: float,
                            modalities: tuple[str, ...]) -> Batch:
    """Drop each modality of each sample independently with probability ``rate``, keeping at least one."""
    targets = torch.tensor([m in modalities for m in batch.modalities], dtype=torch.bool)
    return batch.drop(draw_modality_keep(generator, batch.present, rate, targets))


def draw_exact_keep(generator: torch.Generator, present: Tensor, rate: float, targets: Tensor) -> Tensor:
    """bool ``[N, M]`` keep mask removing exactly ``round(rate * P)`` of the P present targeted slots, clipped so
    every sample keeps one (rule in the module docstring). Two uniform draws per slot: the guaranteed slot is each
    row's highest first draw, the other kept slots the highest second draws."""
    n, m = present.shape
    targeted = present & targets.to(present.device).view(1, m)
    fixed = present & ~targeted  # untargeted present modalities are never removed
    u1, u2 = uniform(generator, (n, m), present.device), uniform(generator, (n, m), present.device)
    needs = targeted.any(1) & ~fixed.any(1)  # rows that would be empty without a guaranteed slot
    first = torch.where(targeted, u1, torch.full_like(u1, -1.0)).argmax(1)
    guaranteed = torch.zeros_like(present)
    guaranteed[needs.nonzero().squeeze(1), first[needs]] = True
    slots = int(targeted.sum())
    extra = min(max(round((1.0 - rate) * slots) - int(guaranteed.sum()), 0), slots - int(guaranteed.sum()))
    pool = (targeted & ~guaranteed).flatten()
    scores = torch.where(pool, u2.flatten(), torch.full_like(u2.flatten(), -1.0))
    chosen = torch.zeros(n * m, dtype=torch.bool, device=present.device)
    chosen[scores.topk(extra).indices] = True
    return fixed | guaranteed | chosen.view(n, m) | ~present


@corruption("exact_modality_missing", family="missing", kind="missing", params={"rate": RATE},
            example={"rate": 0.5}, zero={"rate": 0.0})
def exact_modality_missing(batch: Batch, generator: torch.Generator, *, rate: float,
                           modalities: tuple[str, ...]) -> Batch:
    """Remove exactly a fraction ``rate`` of the present (sample, modality) slots, keeping one per sample."""
    targets = torch.tensor([m in modalities for m in batch.modalities], dtype=torch.bool)
    return batch.drop(draw_exact_keep(generator, batch.present, rate, targets))


def draw_frame_mask(generator: torch.Generator, lengths: Tensor, seq_len: int, rate: float) -> Tensor:
    """bool ``[N, T]``, True at masked steps: valid steps (``t < lengths``) with U[0, 1) ``< rate``."""
    u = uniform(generator, (len(lengths), seq_len), lengths.device)
    return (u < rate) & (torch.arange(seq_len, device=lengths.device).view(1, -1) < lengths.view(-1, 1))


def draw_block_mask(generator: torch.Generator, lengths: Tensor, seq_len: int, rate: float) -> Tensor:
    """bool ``[N, T]``, True on one block of ``round(rate * length)`` steps (round half to even) per row.

    The start is ``floor(u * (length - L + 1))`` with one U[0, 1) draw per row, so the block lies inside the
    valid steps (CIDer's STMFM uses ``len - 2`` to spare CLS/SEP tokens; features have none).
    """
    block = torch.round(rate * lengths.double()).long()  # [N]
    start = (uniform(generator, (len(lengths),), lengths.device).double() * (lengths - block + 1)).floor().long()
    t = torch.arange(seq_len, device=lengths.device).view(1, -1)
    return (t >= start.view(-1, 1)) & (t < (start + block).view(-1, 1))


def _zero_steps(batch: Batch, generator: torch.Generator, rate: float, modalities: tuple[str, ...],
                draw: Any) -> Batch:
    new = {}
    for m in modalities:  # one draw per targeted modality, in the data's modality order
        x = batch.x[m]
        masked = draw(generator, batch.lengths[m], x.shape[1], rate) & valid_steps(batch, m)
        new[m] = x * (~masked).unsqueeze(-1).to(x.dtype)
    return batch.replace_features(new)


@corruption("frame_mask", family="missing", kind="feature", params={"rate": RATE}, example={"rate": 0.5},
            zero={"rate": 0.0}, sequence_only=True)
def frame_mask(batch: Batch, generator: torch.Generator, *, rate: float, modalities: tuple[str, ...]) -> Batch:
    """Zero each valid time step of each targeted modality independently with probability ``rate``."""
    return _zero_steps(batch, generator, rate, modalities, draw_frame_mask)


@corruption("frame_block_mask", family="missing", kind="feature", params={"rate": RATE}, example={"rate": 0.5},
            zero={"rate": 0.0}, sequence_only=True)
def frame_block_mask(batch: Batch, generator: torch.Generator, *, rate: float,
                     modalities: tuple[str, ...]) -> Batch:
    """Zero one contiguous block of ``round(rate * length)`` valid steps per sample and targeted modality."""
    return _zero_steps(batch, generator, rate, modalities, draw_block_mask)
