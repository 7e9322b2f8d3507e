"""Statistical power of the paired seed-level comparisons: what a run *could* have detected.

Pure functions, no files, no global random state (see :mod:`harness.stats` for the test conventions).

The computation (also in docs/reports.md)
-----------------------------------------
A comparison of a method with the reference pairs their values on seed; the per-seed differences
``d_1 .. d_n`` have mean ``delta`` and standard deviation ``sigma``. The two-sided paired t-test at level
``a`` rejects when ``|T| > t_{1 - a/2, n-1}``, where ``T = mean(d) / (sd(d) / sqrt(n))`` follows a
noncentral t distribution with ``n - 1`` degrees of freedom and noncentrality ``delta sqrt(n) / sigma``.
Its power is therefore ``P(T > t_crit) + P(T < -t_crit)`` under ``scipy.stats.nct`` (:func:`paired_t_power`).

* The *minimum detectable effect* (MDE) is the smallest ``|delta|`` whose power reaches the target (80 %)
  for the observed ``sigma`` and ``n`` (:func:`minimum_detectable_effect`, solved with ``brentq``).
* The *seeds needed* for an observed difference is the smallest ``n`` whose power at that ``delta`` reaches
  the target (:func:`seeds_needed`).
* A correction shrinks the level each comparison is tested at: with Holm or Benjamini-Hochberg over a family
  of ``m`` comparisons, a lone real difference must reach ``p <= alpha / m`` (Holm's first step; BH's
  threshold for one discovery), so ``a = alpha / m`` (:func:`comparison_level`). Uncorrected, ``a = alpha``.
  This is conservative when several differences are real (both corrections then relax).
* ``sigma`` is estimated from the run (sample std, ddof = 1, of the per-seed differences): with few seeds it is
  itself noisy, so the MDE is a planning figure, not a guarantee.
* A Wilcoxon signed-rank test cannot reject at all when its smallest attainable p (2 / 2^n) exceeds ``a``: its
  MDE is then infinite. Otherwise the t-test computation stands in for it (close under normality: the
  asymptotic relative efficiency is 3/pi = 0.95).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from harness.stats import min_attainable_p, recommend_seeds

TARGET_POWER = 0.8


def comparison_level(alpha: float, m: int, correction: str) -> float:
    """The level one comparison of a family of ``m`` must reach (module docstring): ``alpha / m`` under Holm or
    Benjamini-Hochberg, ``alpha`` without a correction."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return alpha if correction == "none" else alpha / max(1, m)


def _power(d: float, n: np.ndarray, level: float) -> np.ndarray:
    """Power for a standardised effect ``d = |delta| / sigma`` at every sample size in ``n`` (vectorised)."""
    df = n - 1.0
    crit = stats.t.ppf(1.0 - level / 2.0, df)
    nc = abs(d) * np.sqrt(n)
    with np.errstate(all="ignore"):
        upper, lower = stats.nct.sf(crit, df, nc), stats.nct.cdf(-crit, df, nc)
    # scipy's nct returns NaN deep in a tail (nc in the tens): there the lower tail is 0 and the upper 1.
    return np.where(np.isfinite(upper), upper, 1.0) + np.where(np.isfinite(lower), lower, 0.0)


def paired_t_power(effect: float, sd: float, n: int, level: float) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs at ``level`` when the per-pair differences have
    mean ``effect`` and standard deviation ``sd`` (``scipy.stats.nct``, module docstring). NaN if n < 2 or
    ``sd`` is not positive."""
    if n < 2 or not np.isfinite(sd) or sd <= 0.0 or not np.isfinite(effect):
        return float("nan")
    return float(_power(effect / sd, np.array([float(n)]), level)[0])


@functools.lru_cache(maxsize=4096)
def _standard_mde(n: int, level: float, power: float) -> float:
    """The minimum detectable effect in units of sigma (it scales with sigma, so one solve per n and level)."""
    high = 1.0
    while _power(high, np.array([float(n)]), level)[0] < power:
        high *= 2.0
    return float(optimize.brentq(lambda d: _power(d, np.array([float(n)]), level)[0] - power, 0.0, high,
                                 xtol=1e-10))


def minimum_detectable_effect(sd: float, n: int, level: float, power: float = TARGET_POWER) -> float:
    """Smallest ``|mean difference|`` the paired t-test detects with probability ``power`` (same units as
    ``sd``); NaN when not computable (n < 2, ``sd`` not positive)."""
    if n < 2 or not np.isfinite(sd) or sd <= 0.0:
        return float("nan")
    return sd * _standard_mde(int(n), float(level), float(power))


def seeds_needed(effect: float, sd: float, level: float, power: float = TARGET_POWER,
                 max_seeds: int = 100_000) -> int | None:
    """Smallest number of paired seeds (>= 2) at which a true difference ``effect`` is detected with probability
    ``power``; None when the difference is zero, ``sd`` is not usable, or more than ``max_seeds`` would be needed.

    The t-test needs at least the normal approximation's ``((z_{1-a/2} + z_power) / d)^2`` pairs and, past the
    smallest n, only a few more: that window is searched at once, the rest by bisection (power rises with n)."""
    if not np.isfinite(effect) or effect == 0.0 or not np.isfinite(sd) or sd <= 0.0:
        return None
    d = abs(effect) / sd
    if _power(d, np.array([float(max_seeds)]), level)[0] < power:
        return None
    z = (stats.norm.ppf(1.0 - level / 2.0) + stats.norm.ppf(power)) / d
    start = int(max(2, min(max_seeds, math.floor(z * z))))
    window = np.arange(start, min(max_seeds, start + 64) + 1, dtype=float)
    reached = np.flatnonzero(_power(d, window, level) >= power)
    if reached.size and (reached[0] > 0 or start == 2):
        return int(window[reached[0]])
    low, high = (start + 64, max_seeds) if not reached.size else (2, start)  # outside the window: bisect
    while low < high:
        mid = (low + high) // 2
        if _power(d, np.array([float(mid)]), level)[0] >= power:
            high = mid
        else:
            low = mid + 1
    return high


def detectable(sd: float, n: int, level: float, test: str = "ttest", power: float = TARGET_POWER) -> float:
    """:func:`minimum_detectable_effect` for ``test``; infinite for a Wilcoxon test whose smallest attainable p
    (2 / 2^n) cannot go below ``level`` (module docstring)."""
    if test == "wilcoxon" and n >= 2 and min_attainable_p("wilcoxon", n) >= level:
        return float("inf")
    return minimum_detectable_effect(sd, n, level, power)


def needed(effect: float, sd: float, level: float, test: str = "ttest", power: float = TARGET_POWER) -> int | None:
    """:func:`seeds_needed` for ``test``; a Wilcoxon test also needs enough seeds to go below ``level`` at all."""
    n = seeds_needed(effect, sd, level, power)
    return max(n, recommend_seeds("wilcoxon", level)) if n is not None and test == "wilcoxon" else n


@dataclass(frozen=True)
class Comparison:
    """One method-vs-reference comparison for power: mean and sd of the per-seed differences, n pairs."""

    method: str
    column: str
    diff: float
    sd: float
    n: int

    @property
    def usable(self) -> bool:
        return self.n >= 2 and bool(np.isfinite(self.sd)) and self.sd > 0.0


@dataclass(frozen=True)
class FamilyPower:
    """Power of one comparison family (a table's comparisons sharing a metric), in the metric's stored units.

    ``sd`` pools the per-seed difference std of the family's comparisons (root mean square); ``mde`` is the
    minimum detectable effect for that ``sd`` at ``n`` (the smallest number of paired seeds in the family) and
    ``level`` (the per-comparison level after the correction over ``m`` comparisons). ``largest`` is the
    comparison with the largest observed ``|mean difference|`` and ``largest_needs`` the seeds it would need
    (None: not reachable, or a zero difference).
    """

    metric: str
    test: str
    m: int
    n: int
    level: float
    sd: float
    mde: float
    largest: Comparison
    largest_needs: int | None


def family_power(metric: str, comparisons: list[Comparison], alpha: float, correction: str, test: str = "ttest",
                 power: float = TARGET_POWER, m: int | None = None) -> FamilyPower | None:
    """:class:`FamilyPower` of a family; None when no comparison has two pairs and a positive spread.
    ``m``: the correction's family size (default: every comparison given)."""
    usable = [c for c in comparisons if c.usable]
    if not usable:
        return None
    m = len(comparisons) if m is None else m
    level = comparison_level(alpha, m, correction)
    n = min(c.n for c in usable)
    sd = float(np.sqrt(np.mean([c.sd ** 2 for c in usable])))
    largest = max(usable, key=lambda c: abs(c.diff))
    return FamilyPower(metric, test, m, n, level, sd, detectable(sd, n, level, test, power), largest,
                       needed(largest.diff, largest.sd, level, test, power))
