"""Contract tests over every registered corruption, and pinned masks so a silent change of semantics fails."""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import pytest
import torch

from corruptions.missing import draw_block_mask, draw_frame_mask, draw_modality_keep
from corruptions.noise import noise_amplitude
from corruptions.partial import on_fraction
from corruptions.spec import CorruptionSpec, FeatureStats, Range
from corruptions.temporal import shuffle_index
from harness.data import Batch, Dataset
from harness.evaluate import condition_generator
from harness.registry import CORRUPTIONS, PROTOCOLS
from harness.seeding import torch_generator

NAMES = CORRUPTIONS.names()


@pytest.fixture(scope="module")
def batch(tiny_mosi: Dataset) -> Batch:
    """The tiny test split with some modalities already absent, as real data may have them: rows 0-3 lack audio,
    rows 4-5 lack text, and rows 7, 8, 9 have only text, only audio, only vision (so removing any one modality
    would empty some row)."""
    keep = torch.ones(len(tiny_mosi.test), 3, dtype=torch.bool)
    keep[:4, 1] = False
    keep[4:6, 0] = False
    for row, only in ((7, 0), (8, 1), (9, 2)):
        keep[row] = False
        keep[row, only] = True
    return tiny_mosi.test.drop(keep)


@pytest.fixture(scope="module")
def stats(tiny_mosi: Dataset) -> FeatureStats:
    return FeatureStats.from_batch(tiny_mosi.train)


def call(spec: CorruptionSpec, batch: Batch, seed: int, stats: FeatureStats, params: dict[str, Any]) -> Batch:
    extra = {"stats": stats} if spec.needs_stats else {}
    return spec(batch, torch_generator(seed), **params, **extra)


def snapshot(b: Batch) -> list[torch.Tensor]:
    tensors = [*b.x.values(), *b.lengths.values(), b.present, b.y]
    return [v.clone() for v in tensors]


def same(a: Batch, b: Batch) -> bool:
    return all(torch.equal(a.x[m], b.x[m]) for m in a.x) and torch.equal(a.present, b.present) and all(
        torch.equal(a.lengths[m], b.lengths[m]) for m in a.lengths) and torch.equal(a.y, b.y)


def test_every_family_is_registered() -> None:
    families = {CORRUPTIONS.get(n).family for n in NAMES}
    assert {"missing", "noise", "temporal", "validation"} <= families
    assert all(CORRUPTIONS.get(n).kind in ("missing", "feature") for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_input_is_never_modified(name: str, batch: Batch, stats: FeatureStats) -> None:
    spec = CORRUPTIONS.get(name)
    before = snapshot(batch)
    call(spec, batch, 0, stats, dict(spec.example))
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot(batch), strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed_and_different_across_seeds(name: str, batch: Batch, stats: FeatureStats) -> None:
    spec = CORRUPTIONS.get(name)
    a, b = (call(spec, batch, 1, stats, dict(spec.example)) for _ in range(2))
    assert same(a, b)
    c = call(spec, batch, 2, stats, dict(spec.example))
    assert same(a, c) != spec.random  # random corruptions differ across seeds, deterministic ones never do
    assert not same(a, batch), "the example setting must change the data"


@pytest.mark.parametrize("name", [n for n in NAMES if CORRUPTIONS.get(n).zero is not None])
def test_zero_severity_is_the_identity(name: str, batch: Batch, stats: FeatureStats) -> None:
    """Where an identity setting is defined (quantisation, for one, has none, so it is not listed here)."""
    spec = CORRUPTIONS.get(name)
    assert same(call(spec, batch, 3, stats, dict(spec.zero)), batch)


@pytest.mark.parametrize("name", NAMES)
def test_out_of_range_parameters_raise(name: str, batch: Batch, stats: FeatureStats) -> None:
    spec = CORRUPTIONS.get(name)
    for key, valid in spec.params.items():
        for bad in valid.outside():
            with pytest.raises(ValueError, match=rf"{name}: {key} = .* valid: "):
                call(spec, batch, 0, stats, {**spec.example, key: bad})
    with pytest.raises(ValueError, match="unknown parameter"):
        call(spec, batch, 0, stats, {**spec.example, "severity_index": 3})
    with pytest.raises(ValueError, match=r"\['depth'\] are not in the data; valid modalities"):
        call(spec, batch, 0, stats, {**spec.example, "modalities": ("depth",)})
    if spec.needs_stats:
        with pytest.raises(ValueError, match="needs stats="):
            spec(batch, torch_generator(0), **spec.example)


@pytest.mark.parametrize("name", NAMES)
def test_rules_beyond_the_ranges_raise(name: str, batch: Batch, stats: FeatureStats) -> None:
    """Each corruption lists the settings its extra rule refuses (an even smoothing window, a shift of at least
    T steps, removing every modality): ranges cannot express them, so each spec names its own examples."""
    spec = CORRUPTIONS.get(name)
    assert spec.extra_check is None or spec.invalid, f"{name} has a rule beyond its ranges but no invalid examples"
    for params, message in spec.invalid:
        with pytest.raises(ValueError, match=rf"^{name}: .*{message}"):
            call(spec, batch, 0, stats, {**spec.example, **params})


def severe(spec: CorruptionSpec) -> dict[str, Any]:
    """The example with every rate-like parameter (a range ending at or below 1) at its strongest value."""
    top = {k: (v.hi - 0.01 if v.hi_open else v.hi) for k, v in spec.params.items()
           if isinstance(v, Range) and v.hi <= 1 and k in spec.example}
    return {**spec.example, **top}


@pytest.mark.parametrize("name", [n for n in NAMES if CORRUPTIONS.get(n).kind == "missing"])
def test_missing_corruptions_never_empty_a_sample(name: str, batch: Batch, stats: FeatureStats) -> None:
    """Target every proper subset of modalities, including each single one, which is the only modality of some
    rows of the fixture: a sample that had a modality must keep one of its own."""
    spec = CORRUPTIONS.get(name)
    mods = batch.modalities
    for k in range(1, len(mods)):
        for targets in combinations(mods, k):
            cols = torch.tensor([m in targets for m in mods])
            emptiable = batch.present.any(1) & ~(batch.present & ~cols).any(1)
            assert k > 1 or emptiable.any(), "the fixture must have a row holding only the targeted modalities"
            for params in (dict(spec.example), severe(spec)):
                out = call(spec, batch, 5, stats, {**params, "modalities": targets})
                assert torch.equal(out.present.any(1), batch.present.any(1)), (targets, params)
                assert not (out.present & ~batch.present).any()


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_padding_and_a_modality_remain(name: str, batch: Batch, stats: FeatureStats) -> None:
    spec = CORRUPTIONS.get(name)
    for params in (dict(spec.example), severe(spec)):
        out = call(spec, batch, 4, stats, params)
        for m, x in batch.x.items():
            assert out.x[m].shape == x.shape and out.x[m].dtype == x.dtype
            assert torch.isfinite(out.x[m]).all()
            pad = torch.arange(x.shape[1]).view(1, -1) >= batch.lengths[m].view(-1, 1)
            assert (out.x[m][pad] == 0).all(), "padding must stay zero"
            absent = ~out.present[:, batch.modalities.index(m)]
            assert (out.x[m][absent] == 0).all(), "an absent modality's features must be zero"
        assert out.present.dtype == torch.bool and out.present.shape == batch.present.shape
        assert out.present.any(1).all(), "every sample keeps at least one modality"
        assert not (out.present & ~batch.present).any(), "a corruption never restores a modality"
        assert all(torch.equal(out.lengths[m], batch.lengths[m]) for m in batch.lengths)
        assert torch.equal(out.y, batch.y)
        if spec.kind == "feature":
            assert torch.equal(out.present, batch.present)


@pytest.mark.parametrize("name", [n for n in NAMES if CORRUPTIONS.get(n).sequence_only])
def test_sequence_corruptions_refuse_utterance_level_data(name: str, tiny_iemocap: Dataset) -> None:
    spec = CORRUPTIONS.get(name)
    stats = FeatureStats.from_batch(tiny_iemocap.train)
    with pytest.raises(ValueError, match=r"needs sequences \(T > 1\); modality 'text' has T = 1"):
        call(spec, tiny_iemocap.test, 0, stats, dict(spec.example))


def test_random_missing_keeps_one_even_at_extreme_rates(batch: Batch) -> None:
    spec = CORRUPTIONS.get("random_modality_missing")
    out = spec(batch, torch_generator(0), rate=0.999)
    assert out.present.any(1).all() and out.present.sum(1).max() == 1


def test_random_missing_keeps_one_of_the_samples_own_modalities() -> None:
    """The redraw checks the sample's available modalities, not the dataset's: a row with only text keeps text."""
    present = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [0, 0, 0]], dtype=torch.bool).repeat(20, 1)
    for targets in (torch.ones(3).bool(), torch.tensor([True, True, False])):
        keep = draw_modality_keep(torch_generator(0), present, 0.95, targets)
        assert torch.equal((keep & present).any(1), present.any(1))
        assert (keep[:, 2] | targets[2]).all(), "an untargeted modality is never dropped"


def test_remove_modalities_leaves_a_sample_it_would_empty_unchanged(batch: Batch) -> None:
    out = CORRUPTIONS.get("remove_modalities")(batch, torch_generator(0), modalities=("text",))
    assert out.present[7].tolist() == [True, False, False] and torch.equal(out.x["text"][7], batch.x["text"][7])
    assert out.present[0].tolist() == [False, False, True] and (out.x["text"][0] == 0).all()  # text + vision before
    assert not out.present[torch.arange(len(batch)) != 7, 0].any()


# Pinned first masks. If one of these fails, the semantics of a protocol changed: bump its version.

def test_pinned_random_modality_mask() -> None:
    keep = draw_modality_keep(torch_generator(0), torch.ones(8, 3, dtype=torch.bool), 0.5, torch.ones(3).bool())
    assert keep.int().tolist() == [[0, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, 1],
                                   [1, 0, 1]]


def test_pinned_frame_masks() -> None:
    lengths = torch.tensor([10, 8, 6, 5])
    iid = draw_frame_mask(torch_generator(0), lengths, 10, 0.3)
    assert iid.int().tolist() == [[0, 0, 1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0, 0, 0, 0, 0],
                                  [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]]
    block = draw_block_mask(torch_generator(0), lengths, 10, 0.3)
    assert block.int().tolist() == [[0, 0, 0, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1, 0, 0, 0],
                                    [1, 1, 0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]]


def test_pinned_protocol_masks_through_the_seed_derivation(tiny_mosi: Dataset) -> None:
    """The evaluator's generator comes from (protocol, version, condition name): pin the result end to end."""
    stats = FeatureStats.from_batch(tiny_mosi.train)
    test = tiny_mosi.test
    p = PROTOCOLS.get("random_missing")
    cond = {c.name: c for c in p.conditions(tiny_mosi.spec, stats)}["r=0.5/seed=0"]
    out = cond.apply(test, condition_generator(p, cond))
    assert out.present[:8].int().tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                                              [1, 0, 1], [0, 1, 1]]
    p = PROTOCOLS.get("frame_missing")
    cond = {c.name: c for c in p.conditions(tiny_mosi.spec, stats)}["iid/r=0.3"]
    out = cond.apply(test, condition_generator(p, cond))
    masked = (out.x["text"] == 0).all(-1) & ~(test.x["text"] == 0).all(-1)
    assert test.lengths["text"][:4].tolist() == [4, 8, 5, 5]
    assert masked[:4].int().tolist() == [[0, 1, 0, 1, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1, 1, 0],
                                         [0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]]


# Semantics of individual corruptions.

def test_gaussian_noise_has_the_requested_snr_against_training_power(tiny_mosi: Dataset) -> None:
    big = Batch.cat([tiny_mosi.test] * 20)
    stats = FeatureStats.from_batch(tiny_mosi.train)
    out = CORRUPTIONS.get("gaussian_noise")(big, torch_generator(0), snr_db=10.0, stats=stats, modalities=("text",))
    valid = torch.arange(8).view(1, -1) < big.lengths["text"].view(-1, 1)
    noise = (out.x["text"] - big.x["text"])[valid]  # [K, D]
    ratio = noise.pow(2).mean(0) / stats.power["text"]
    assert ratio.mean().item() == pytest.approx(0.1, rel=0.05)
    assert torch.equal(out.x["audio"], big.x["audio"])
    assert noise_amplitude(0.0) == 1.0 and noise_amplitude(math.inf) == 0.0 and noise_amplitude(20) == 0.1


def test_impulse_noise_uses_the_training_range(batch: Batch, stats: FeatureStats) -> None:
    out = CORRUPTIONS.get("impulse_noise")(batch, torch_generator(0), rate=0.99, stats=stats, modalities=("vision",))
    valid = (batch.lengths["vision"].view(-1, 1) > torch.arange(10).view(1, -1)) & batch.present[:, 2:]
    x = out.x["vision"][valid]
    at_hi, at_lo = x == stats.hi["vision"], x == stats.lo["vision"]
    assert (at_hi | at_lo).float().mean() > 0.98 and 0.4 < at_hi.float().mean() < 0.6
    with pytest.raises(ValueError, match=r"impulse_noise: rate = 1.0 is out of range; valid: \[0, 1\)"):
        CORRUPTIONS.get("impulse_noise")(batch, torch_generator(0), rate=1.0, stats=stats)


def test_shuffle_is_a_permutation_of_valid_steps_and_shift_moves_by_k(batch: Batch) -> None:
    index = shuffle_index(torch_generator(0), torch.tensor([6, 3]), 8, 1.0)
    assert sorted(index[0, :6].tolist()) == list(range(6)) and index[0, 6:].tolist() == [6, 7]
    assert sorted(index[1, :3].tolist()) == [0, 1, 2] and index[1, 3:].tolist() == list(range(3, 8))
    assert torch.equal(shuffle_index(torch_generator(0), torch.tensor([6]), 8, 0.0), torch.arange(8).view(1, -1))
    out = CORRUPTIONS.get("temporal_shift")(batch, torch_generator(0), steps=2, modalities=("audio",))
    n = 6  # a row with audio present
    length = int(batch.lengths["audio"][n])
    assert torch.equal(out.x["audio"][n, 2:length], batch.x["audio"][n, :length - 2])
    assert (out.x["audio"][n, :2] == 0).all() and torch.equal(out.x["text"], batch.x["text"])
    with pytest.raises(ValueError, match=r"steps = 10 is out of range for modality 'audio'; valid: abs\(steps\) < T"):
        CORRUPTIONS.get("temporal_shift")(batch, torch_generator(0), steps=10, modalities=("audio",))


def test_remove_modalities_refuses_to_remove_everything(batch: Batch) -> None:
    with pytest.raises(ValueError, match="at least one modality must remain"):
        CORRUPTIONS.get("remove_modalities")(batch, torch_generator(0))


def test_partial_corruption_touches_exactly_the_chosen_fraction(batch: Batch, stats: FeatureStats) -> None:
    noise = CORRUPTIONS.get("gaussian_noise")
    apply = on_fraction(0.25, [lambda b, g: noise(b, g, snr_db=0.0, stats=stats)])
    out = apply(batch, torch_generator(0))
    changed = torch.stack([(out.x[m] != batch.x[m]).flatten(1).any(1) for m in batch.x]).any(0)
    assert int(changed.sum()) == round(0.25 * len(batch))
    assert same(apply(batch, torch_generator(0)), out)
