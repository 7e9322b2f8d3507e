"""Protocols comparable with published tables: GCNet/CPM-Net's missing rate and MultiBench's noise recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from corruptions.missing import exact_modality_missing, random_modality_missing
from corruptions.noise import multibench_noise
from harness.data import Batch, Dataset, batch_from_numpy
from harness.evaluate import condition_generator
from harness.registry import PROTOCOLS
from harness.seeding import torch_generator

RATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
M = 3


def split(n: int = 1000, t: int = 4, present: np.ndarray | None = None) -> Batch:
    rng = np.random.default_rng(0)
    x = {m: rng.normal(size=(n, t, 2)).astype(np.float32) + 3.0 for m in ("text", "audio", "vision")}
    return batch_from_numpy(x, rng.normal(size=n).astype(np.float32), present=present)


def realised(before: Batch, after: Batch) -> float:
    return 1.0 - float(after.present.sum()) / float(before.present.sum())


@pytest.mark.parametrize("rate", RATES)
def test_missing_rate_realises_the_rate_and_keeps_one_modality(rate: float) -> None:
    """GCNet/CPM-Net: the realised missing fraction over the split is r (within 0.01 on 1000 samples), at least
    one modality per sample; above (M - 1)/M no split can lose more, so every sample keeps exactly one."""
    test = split()
    for seed in range(3):
        out = exact_modality_missing(test, torch_generator(seed), rate=rate)
        kept = out.present.sum(1)
        assert bool((kept >= 1).all())
        if rate <= (M - 1) / M:
            assert abs(realised(test, out) - rate) <= 0.01, (rate, realised(test, out))
        else:
            assert bool((kept == 1).all()) and realised(test, out) == pytest.approx((M - 1) / M)
        removed = test.present & ~out.present
        assert all(float(out.x[m][removed[:, j]].abs().sum()) == 0 for j, m in enumerate(test.modalities))


def test_random_missing_is_not_the_literature_rate_which_is_why_missing_rate_exists() -> None:
    test = split()
    out = random_modality_missing(test, torch_generator(0), rate=0.7)
    assert abs(realised(test, out) - 0.54) < 0.02  # r (1 - r^2) / (1 - r^3) = 0.54
    assert float((out.present.sum(1) >= 2).float().mean()) > 0.25


def test_missing_rate_counts_only_present_slots_and_keeps_each_samples_own() -> None:
    present = np.ones((1000, 3), dtype=bool)
    present[:300, 1] = False  # natural missingness: 300 samples lack audio
    present[300:400, :2] = False  # 100 samples have vision only
    test = split(present=present)
    out = exact_modality_missing(test, torch_generator(1), rate=0.4)
    assert not bool((out.present & ~test.present).any()), "never makes a modality appear"
    assert bool(out.present[300:400, 2].all()), "a sample's only modality is kept"
    assert abs(realised(test, out) - 0.4) <= 0.01


def test_missing_rate_targets_only_the_named_modalities() -> None:
    test = split()
    out = exact_modality_missing(test, torch_generator(2), rate=0.5, modalities=("audio", "vision"))
    assert bool(out.present[:, 0].all())
    lost = 1 - float(out.present[:, 1:].sum()) / float(test.present[:, 1:].sum())
    assert abs(lost - 0.5) <= 0.01


def test_missing_rate_protocol_grid_and_pairing(tiny_mosi: Dataset) -> None:
    p = PROTOCOLS.get("missing_rate")
    test = tiny_mosi.test
    spec_conds = p.conditions(tiny_mosi.spec)  # no feature statistics needed
    assert [c.severity for c in spec_conds[::3]] == list(RATES) and spec_conds[0].name == "r=0.1/seed=0"
    c = spec_conds[5]
    a, b = c.apply(test, condition_generator(p, c)), c.apply(test, condition_generator(p, c))
    assert torch.equal(a.present, b.present), "a condition's mask is the same for every method and seed"


def test_multibench_noise_is_per_step_gaussian_plus_step_drop() -> None:
    """MultiBench's add_timeseries_noise(rand_drop=False): one N(0, level²) draw per time step on all of its
    features, then each time step zeroed with probability level."""
    test = split(2000, t=10)
    level = 0.4
    out = multibench_noise(test, torch_generator(3), level=level)
    x, y = test.x["audio"], out.x["audio"]
    dropped = (y == 0).all(-1)
    assert abs(float(dropped.float().mean()) - level) < 0.02
    diff = (y - x)[~dropped]  # [K, 2]: the same scalar added to both features of a step
    assert torch.allclose(diff[:, 0], diff[:, 1], atol=1e-5)
    assert abs(float(diff[:, 0].std()) - level) < 0.02 and abs(float(diff[:, 0].mean())) < 0.02
    clean = multibench_noise(test, torch_generator(3), level=0.0)
    assert torch.equal(clean.x["audio"], x)


def test_noise_multibench_protocol_levels_and_targets(tiny_mosi: Dataset) -> None:
    p = PROTOCOLS.get("noise_multibench")
    conds = p.conditions(tiny_mosi.spec)
    assert len(conds) == 4 * 10
    assert conds[3].name == "level=0.3/modality=all" and conds[3].severity == pytest.approx(0.3)
    assert {c.curve for c in conds} == {f"noise_multibench/{t}" for t in ("all", "text", "audio", "vision")}
