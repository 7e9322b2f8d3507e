"""Power of the paired seed-level t-test, checked against a simulation and published sample sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.power import (
    Comparison,
    comparison_level,
    detectable,
    family_power,
    minimum_detectable_effect,
    needed,
    paired_t_power,
    seeds_needed,
)


def simulated_power(effect: float, sd: float, n: int, level: float, draws: int = 40_000, seed: int = 0) -> float:
    """Share of simulated paired experiments (normal per-seed differences) that the t-test rejects."""
    d = np.random.default_rng(seed).normal(effect, sd, size=(draws, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    return float(np.mean(np.abs(t) > stats.t.ppf(1 - level / 2, n - 1)))


@pytest.mark.parametrize(("effect", "sd", "n", "level"), [(1.0, 1.0, 5, 0.05), (2.5, 1.5, 3, 0.05),
                                                          (12.0, 4.0, 4, 0.05 / 24), (0.3, 1.0, 20, 0.01)])
def test_power_matches_a_simulation(effect: float, sd: float, n: int, level: float) -> None:
    simulated = simulated_power(effect, sd, n, level)
    se = math.sqrt(simulated * (1 - simulated) / 40_000)
    assert paired_t_power(effect, sd, n, level) == pytest.approx(simulated, abs=4 * se + 1e-3)


def test_power_at_zero_effect_is_the_level_and_mde_has_the_target_power() -> None:
    assert paired_t_power(0.0, 1.0, 6, 0.05) == pytest.approx(0.05)
    mde = minimum_detectable_effect(2.0, 3, 0.05 / 24)
    assert paired_t_power(mde, 2.0, 3, 0.05 / 24) == pytest.approx(0.8, abs=1e-6)
    assert simulated_power(mde, 2.0, 3, 0.05 / 24) == pytest.approx(0.8, abs=0.012)
    assert minimum_detectable_effect(2.0, 3, 0.05) < mde  # a correction costs detectable effect
    assert minimum_detectable_effect(2.0, 10, 0.05) < minimum_detectable_effect(2.0, 3, 0.05)  # seeds buy it back
    assert math.isnan(minimum_detectable_effect(0.0, 3, 0.05)) and math.isnan(minimum_detectable_effect(1.0, 1, 0.05))


def test_seeds_needed_reproduces_published_sample_sizes() -> None:
    # Paired t-test, two-sided alpha 0.05, power 0.8 (Cohen 1988; G*Power): d = 1 needs 10 pairs, d = 0.5 needs 34.
    assert seeds_needed(1.0, 1.0, 0.05) == 10 and seeds_needed(-0.5, 1.0, 0.05) == 34
    assert paired_t_power(1.0, 1.0, 9, 0.05) < 0.8 <= paired_t_power(1.0, 1.0, 10, 0.05)
    assert seeds_needed(0.0, 1.0, 0.05) is None and seeds_needed(1e-6, 1.0, 0.05, max_seeds=1000) is None


@pytest.mark.parametrize("level", [0.05, 0.05 / 24])
def test_seeds_needed_is_the_first_sample_size_with_the_target_power(level: float) -> None:
    for d in (0.05, 0.3, 1.0, 2.5, 8.0):
        n = seeds_needed(d, 1.0, level)
        assert n is not None and paired_t_power(d, 1.0, n, level) >= 0.8
        assert n == 2 or paired_t_power(d, 1.0, n - 1, level) < 0.8


def test_corrections_and_wilcoxon_floor() -> None:
    assert comparison_level(0.05, 24, "holm") == pytest.approx(0.05 / 24)
    assert comparison_level(0.05, 24, "bh") == pytest.approx(0.05 / 24)
    assert comparison_level(0.05, 24, "none") == 0.05
    assert detectable(1.0, 3, 0.05, "wilcoxon") == math.inf  # smallest attainable p with 3 seeds is 0.25
    assert needed(5.0, 1.0, 0.05, "wilcoxon") == 6 and needed(5.0, 1.0, 0.05, "ttest") < 6


def test_family_power_pools_the_spread_and_names_the_largest_difference() -> None:
    comps = [Comparison("a", "full", 1.0, 3.0, 3), Comparison("b", "full", -4.0, 4.0, 3),
             Comparison("c", "text", 2.0, float("nan"), 1)]
    fam = family_power("acc", comps, 0.05, "holm")
    assert fam is not None and fam.m == 3 and fam.n == 3 and fam.level == pytest.approx(0.05 / 3)
    assert fam.sd == pytest.approx(math.sqrt((9 + 16) / 2))
    assert fam.mde == pytest.approx(minimum_detectable_effect(fam.sd, 3, 0.05 / 3))
    assert fam.largest.method == "b" and fam.largest_needs == seeds_needed(4.0, 4.0, 0.05 / 3)
    assert family_power("acc", comps[2:], 0.05, "holm") is None
