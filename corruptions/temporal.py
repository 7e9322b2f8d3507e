"""Temporal corruptions: order destroyed inside a sequence, or one modality misaligned against the others.

| corruption | parameters (valid range) | identity at | what it does |
|---|---|---|---|
| ``temporal_shuffle`` | ``fraction`` in [0, 1] (1 valid); T > 1 | ``fraction=0`` | permutes a random subset of steps |
| ``temporal_shift`` | ``steps`` integer, ``abs(steps) < T`` | ``steps=0`` | delays (k > 0) or advances (k < 0) by k |
| ``temporal_smoothing`` | ``window`` odd integer in [1, 63]; T > 1 | ``window=1`` | centred moving average |

All three take ``modalities`` (default: all) and keep ``lengths``, ``present`` and the zero padding unchanged.

``temporal_shuffle``: per sample and targeted modality, ``round(fraction * length)`` of the valid steps (round
half to even) are chosen uniformly and permuted among themselves uniformly at random (the other steps stay in
place); ``fraction=1`` shuffles the whole valid sequence. Each targeted modality gets its own permutation.
Unlike a rate, a fraction of 1 is not degenerate: every step keeps its content and only the order is lost
(the modality becomes a bag of frames), the strongest order corruption, and the ``temporal`` grid uses it.

``temporal_shift`` (deterministic): ``x'[t] = x[t - k]`` for valid steps whose source ``t - k`` is also
valid, zero otherwise: the modality is misaligned by k steps against the rest, with zeros filling the gap.
A sample whose length is at most ``abs(k)`` ends up all zero in that modality (still ``present``).

``temporal_smoothing`` (deterministic; the feature-level stand-in for visual blur, ModalImmune gap #11): each
valid step becomes the mean of the valid steps within ``window // 2`` of it (the window is cut at the
sequence ends, not zero-padded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from corruptions.spec import Range, corruption, uniform, valid_steps
from harness.data import Batch

FRACTION = Range(0.0, 1.0)
STEPS = Range(-math.inf, math.inf, integer=True)
WINDOW = Range(1, 63, integer=True)


def shuffle_index(generator: torch.Generator, lengths: Tensor, seq_len: int, fraction: float) -> Tensor:
    """int64 ``[N, T]`` gather index: output step t reads input step ``index[n, t]``.

    Two U[0, 1) draws ``[N, T]``: the first picks the ``round(fraction * length)`` valid steps with the smallest
    draws, the second orders the picked steps; the picked positions (in time order) receive the picked steps
    in the second draw's order. Unpicked and padding steps map to themselves.
    """
    n, device = len(lengths), lengths.device
    t = torch.arange(seq_len, device=device).view(1, -1).expand(n, -1)
    valid = t < lengths.view(-1, 1)
    count = torch.round(fraction * lengths.double()).long().view(-1, 1)  # [N, 1]
    pick_key = torch.where(valid, uniform(generator, (n, seq_len), device), torch.full_like(t, 2, dtype=torch.float))
    rank = pick_key.argsort(1).argsort(1)
    picked = rank < count
    order_key = uniform(generator, (n, seq_len), device)
    slots = torch.where(picked, t, t + seq_len).argsort(1)  # picked positions in time order, then the rest
    sources = torch.where(picked, order_key, (t + seq_len).float()).argsort(1)  # picked steps shuffled, then rest
    return torch.empty_like(t).scatter_(1, slots, sources)


@corruption("temporal_shuffle", family="temporal", kind="feature", params={"fraction": FRACTION},
            example={"fraction": 1.0}, zero={"fraction": 0.0}, sequence_only=True)
def temporal_shuffle(batch: Batch, generator: torch.Generator, *, fraction: float,
                     modalities: tuple[str, ...]) -> Batch:
    """Permute a random ``fraction`` of each sequence's valid steps among themselves."""
    new = {}
    for m in modalities:
        x = batch.x[m]
        index = shuffle_index(generator, batch.lengths[m], x.shape[1], fraction)
        new[m] = x.gather(1, index.unsqueeze(-1).expand_as(x))
    return batch.replace_features(new)


def _shift_fits(params: Mapping[str, Any], seq_lens: Mapping[str, int]) -> None:
    for m in params["modalities"]:
        if abs(params["steps"]) >= seq_lens[m]:
            raise ValueError(f"temporal_shift: steps = {params['steps']} is out of range for modality {m!r}; "
                             f"valid: abs(steps) < T = {seq_lens[m]}")


@corruption("temporal_shift", family="temporal", kind="feature", params={"steps": STEPS}, example={"steps": 2},
            zero={"steps": 0}, random=False, extra_check=_shift_fits,
            invalid=(({"steps": 10**6}, r"steps = 1000000 is out of range for modality '\w+'; valid: abs\(steps\) < T"),
                     ({"steps": -10**6}, r"steps = -1000000 is out of range .* valid: abs\(steps\) < T")))
def temporal_shift(batch: Batch, generator: torch.Generator, *, steps: int, modalities: tuple[str, ...]) -> Batch:
    """Shift each targeted modality's valid sequence by ``steps`` (delay if positive), filling with zeros."""
    k = int(steps)
    new = {}
    for m in modalities:
        x = batch.x[m]
        t = torch.arange(x.shape[1], device=x.device).view(1, -1)
        source = t - k  # [1, T]
        ok = valid_steps(batch, m) & (source >= 0) & (source < batch.lengths[m].view(-1, 1))  # [N, T]
        index = source.clamp(0, x.shape[1] - 1).expand(x.shape[0], -1)
        moved = x.gather(1, index.unsqueeze(-1).expand_as(x))
        new[m] = moved * ok.unsqueeze(-1).to(x.dtype)
    return batch.replace_features(new)


def _odd(params: Mapping[str, Any], seq_lens: Mapping[str, int]) -> None:
    if int(params["window"]) % 2 == 0:
        raise ValueError(f"temporal_smoothing: window = {params['window']} is out of range; valid: odd {WINDOW}")


@corruption("temporal_smoothing", family="temporal", kind="feature", params={"window": WINDOW},
            example={"window": 3}, zero={"window": 1}, sequence_only=True, random=False, extra_check=_odd,
            invalid=(({"window": 2}, r"window = 2 is out of range; valid: odd integers in \[1, 63\]"),
                     ({"window": 62}, r"window = 62 is out of range; valid: odd")))
def temporal_smoothing(batch: Batch, generator: torch.Generator, *, window: int,
                       modalities: tuple[str, ...]) -> Batch:
    """Centred moving average over ``window`` valid steps (cut at the sequence ends)."""
    half = int(window) // 2
    new = {}
    for m in modalities:
        x = batch.x[m]
        valid = valid_steps(batch, m).to(x.dtype)  # [N, T]
        xs = F.pad((x * valid.unsqueeze(-1)).transpose(1, 2), (half, half))  # [N, D, T + 2h]
        count = F.pad(valid, (half, half)).unfold(1, 2 * half + 1, 1).sum(-1)  # [N, T]
        total = xs.unfold(2, 2 * half + 1, 1).sum(-1).transpose(1, 2)  # [N, T, D]
        new[m] = total / count.clamp(min=1).unsqueeze(-1) * valid.unsqueeze(-1)
    return batch.replace_features(new)
