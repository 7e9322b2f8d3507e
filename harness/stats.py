"""Seed-level statistics over tidy result records: aggregation, paired tests, corrections.

Pure functions: nothing here reads files, logs results or touches a global random generator.

Conventions used throughout
---------------------------
* A *cell* is one (dataset, protocol, condition, metric); the unit of replication is the training seed.
* Standard deviations are sample standard deviations (``ddof=1``); with fewer than two seeds they are NaN,
  and so is every confidence interval and p-value (never a population std presented as a confidence).
* Paired tests align the two methods on ``seed``. Seeds present (with a finite value) for only one of
  the two are dropped, and the number dropped is written in the result's ``note``.
* All tests are two-sided. ``mean_diff`` is always ``a - b`` (method minus reference) in the metric's
  own units; whether that is better depends on the metric's ``higher_is_better``.
* Multiple-comparison corrections are NaN-aware: NaN p-values stay NaN and are not counted in the family.

Related modules: :mod:`harness.comparisons` (method-vs-reference and all-pairs tables with corrections),
:mod:`harness.resampling` (per-sample tests within a seed), :mod:`harness.robustness` (curve summaries).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

SeedTest = Literal["ttest", "wilcoxon"]
SeedValues = Mapping[int, float] | pd.Series

DEFAULT_BY: tuple[str, ...] = ("dataset", "method", "protocol", "condition", "metric")
_TEST_NAMES: dict[str, str] = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank"}
NOT_COMPUTABLE = "not computable (n<2)"
ZERO_VARIANCE = "differences have zero variance: t-test undefined"
# Differences whose spread is below this fraction of their size are constant up to float noise: e.g. the same
# accuracy gap on a small test set, computed as x - y for two seeds, differs only in the last bits.
_CONSTANT_RTOL = 1e-12


@dataclass(frozen=True)
class TestResult:
    """Outcome of one two-sided paired test.

    ``n`` is the number of pairs used (seeds, or test samples for per-sample tests). ``mean_diff`` is
    ``a - b``: the mean over seeds of the per-seed difference, or for per-sample tests the metric
    difference ``metric(a) - metric(b)``. ``note`` records dropped seeds and degenerate cases.
    """

    __test__ = False  # keep pytest from collecting this class

    test: str
    statistic: float
    p_value: float
    n: int
    mean_diff: float
    note: str = ""


def require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the columns ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"records lack column(s) {missing}; have {list(frame.columns)}")


def require_unique(frame: pd.DataFrame, key: Sequence[str]) -> None:
    """Raise ``ValueError`` when several rows share ``key`` (e.g. a seed recorded twice)."""
    dup = frame.duplicated(list(key), keep=False)
    if dup.any():
        first = frame.loc[dup, list(key)].iloc[0].to_dict()
        raise ValueError(
            f"{int(dup.sum())} rows share the key {list(key)} (first: {first}); one value per seed is "
            "expected - are several protocol versions mixed?"
        )


def aggregate(
    records: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, confidence: float = 0.95
) -> pd.DataFrame:
    """Mean, sample std (ddof=1), n and Student-t interval over seeds, one row per ``by`` group.

    ``n`` counts the finite values; NaN values (failed cells) are excluded. ``std``, ``ci_low`` and
    ``ci_high`` are NaN when n < 2. The interval is ``mean ± t_{(1+c)/2, n-1} · std / sqrt(n)``, the same as
    ``scipy.stats.t.interval(c, n-1, mean, std/sqrt(n))``; with zero spread it collapses to the mean.
    Each (group, seed) must occur once, else ``ValueError``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    by = list(by)
    require_columns(records, [*by, "seed", "value"])
    require_unique(records, [*by, "seed"])
    grouped = records.groupby(by, dropna=False, sort=True)["value"]
    out = pd.DataFrame(
        {"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()}
    ).reset_index()
    n = out["n"].to_numpy(dtype=np.int64)
    std = out["std"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = stats.t.ppf(0.5 + confidence / 2.0, np.maximum(n - 1, 1)) * std / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    out["mean"] = out["mean"].astype(float)
    out["std"] = np.where(n >= 2, std, np.nan)
    out["n"] = n
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out


def _align(a: SeedValues, b: SeedValues) -> tuple[np.ndarray, np.ndarray, int]:
    """Values of ``a`` and ``b`` on their common seeds (sorted) and how many seeds were dropped."""
    sa = pd.Series(a, dtype=float).dropna()
    sb = pd.Series(b, dtype=float).dropna()
    if sa.index.has_duplicates or sb.index.has_duplicates:
        raise ValueError("each seed may appear only once per method")
    common = sa.index.intersection(sb.index).sort_values()
    dropped = len(sa.index.symmetric_difference(sb.index))
    return sa.loc[common].to_numpy(), sb.loc[common].to_numpy(), dropped


def _constant(diff: np.ndarray) -> bool:
    """Whether all differences are equal up to float noise (then a t-statistic divides by ~0)."""
    return float(np.ptp(diff)) <= _CONSTANT_RTOL * float(np.max(np.abs(diff)))


def _quiet(run: Callable[[np.ndarray, np.ndarray], tuple[float, float]], x: np.ndarray,
           y: np.ndarray) -> tuple[float, float, list[str]]:
    """Run a scipy test, turning its warnings into notes: library code must not print to the console, and a
    warning about these numbers belongs beside them in the comparison table."""
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        statistic, p_value = run(x, y)
    return statistic, p_value, list(dict.fromkeys(f"scipy: {w.message}" for w in caught))


def _paired(
    test: SeedTest, a: SeedValues, b: SeedValues, run: Callable[[np.ndarray, np.ndarray], tuple[float, float]]
) -> TestResult:
    x, y, dropped = _align(a, b)
    notes = [f"dropped {dropped} unmatched seed(s)"] if dropped else []
    n, diff = len(x), x - y
    mean_diff = float(diff.mean()) if n else float("nan")
    if n < 2:
        return TestResult(test, float("nan"), float("nan"), n, mean_diff, "; ".join([NOT_COMPUTABLE, *notes]))
    if np.all(diff == 0.0):
        notes.append("all differences zero: p=1 by convention")
        return TestResult(test, 0.0, 1.0, n, mean_diff, "; ".join(notes))
    if test == "ttest" and _constant(diff):
        # t = mean / (0 / sqrt(n)): scipy returns +-inf and p = 0, a certainty no two seeds can give.
        return TestResult(test, float("nan"), float("nan"), n, mean_diff, "; ".join([ZERO_VARIANCE, *notes]))
    if test == "wilcoxon" and np.any(diff == 0.0):
        notes.append(f"{int(np.sum(diff == 0.0))} zero difference(s) dropped (zero_method='wilcox')")
    statistic, p_value, warned = _quiet(run, x, y)
    return TestResult(test, float(statistic), float(p_value), n, mean_diff, "; ".join([*notes, *warned]))


def paired_ttest(a: SeedValues, b: SeedValues) -> TestResult:
    """Two-sided paired t-test (``scipy.stats.ttest_rel``) of ``a`` vs ``b`` aligned on seed.

    ``a``/``b`` map seed -> value. Unmatched seeds are dropped (count in ``note``); n < 2 gives NaN
    statistic and p with note "not computable (n<2)"; all-zero differences give statistic 0, p = 1.
    Differences that are equal but not zero (e.g. the same accuracy gap on every seed) have zero variance:
    the t-statistic is undefined, so statistic and p are NaN with note :data:`ZERO_VARIANCE` (scipy would
    give p = 0 and warn about catastrophic cancellation).
    """
    def run(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        res = stats.ttest_rel(x, y)
        return float(res.statistic), float(res.pvalue)

    return _paired("ttest", a, b, run)


def wilcoxon(a: SeedValues, b: SeedValues) -> TestResult:
    """Two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, defaults) of ``a`` vs ``b``.

    scipy's defaults apply: zero differences are discarded (``zero_method='wilcox'``) and the exact null
    distribution is used for small n without ties. All-zero differences (where scipy has nothing left to
    rank) give statistic 0 and p = 1.0 by convention. Equal non-zero differences are well defined here
    (unlike the t-test): every sign agrees, so p = 2 / 2^n, the exact sign-flip p-value with tied ranks.
    Seed alignment and n < 2 as in :func:`paired_ttest`.
    """
    def run(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        res = stats.wilcoxon(x, y)
        return float(res.statistic), float(res.pvalue)

    return _paired("wilcoxon", a, b, run)


SEED_TESTS: dict[str, Callable[[SeedValues, SeedValues], TestResult]] = {
    "ttest": paired_ttest,
    "wilcoxon": wilcoxon,
}


def check_test(test: str) -> None:
    """Raise ``ValueError`` for a seed-level test name other than those in ``SEED_TESTS``."""
    if test not in SEED_TESTS:
        raise ValueError(f"unknown test {test!r}; known: {sorted(SEED_TESTS)}")


def min_attainable_p(test: SeedTest, n: int) -> float:
    """Smallest two-sided p-value the test can return with n paired seeds.

    Wilcoxon (exact, no zeros or ties): all n signs agreeing has probability 2 / 2^n. The paired t-test
    has no floor (0.0) once n >= 2. With n < 2 neither test is computable and 1.0 is returned.
    """
    check_test(test)
    if n < 2:
        return 1.0
    return 0.0 if test == "ttest" else min(1.0, 2.0 / 2.0**n)


def recommend_seeds(test: SeedTest, alpha: float) -> int:
    """Smallest number of seeds n whose :func:`min_attainable_p` is below ``alpha`` (uncorrected)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n = 2
    while min_attainable_p(test, n) >= alpha:
        n += 1
    return n


def power_warning(test: SeedTest, n: int, alpha: float) -> str | None:
    """A sentence when the test cannot reject at ``alpha`` with n seeds whatever the data, else None."""
    name = _TEST_NAMES.get(test, test)
    floor = min_attainable_p(test, n)
    if n < 2:
        return f"{name} not computable with n={n} seed(s); needs n>=2"
    if floor >= alpha:
        return (
            f"{name} with n={n} cannot reach p<{alpha:g} (smallest attainable two-sided p = {floor:.4g}); "
            f"use at least {recommend_seeds(test, alpha)} seeds"
        )
    return None


def _finite_pvalues(pvalues: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be one-dimensional, got shape {p.shape}")
    mask = ~np.isnan(p)
    if np.any((p[mask] < 0.0) | (p[mask] > 1.0)):
        raise ValueError("p-values must lie in [0, 1] (or be NaN)")
    return p, mask


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values, in input order.

    Sorted ascending, ``adj_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))`` with m the number of non-NaN
    p-values; NaN entries stay NaN and are not counted in m.
    """
    p, mask = _finite_pvalues(pvalues)
    out = np.full(p.shape, np.nan)
    q = p[mask]
    order = np.argsort(q, kind="stable")
    adjusted = np.maximum.accumulate((q.size - np.arange(q.size)) * q[order])
    ranked = np.empty(q.size)
    ranked[order] = np.minimum(adjusted, 1.0)
    out[mask] = ranked
    return out


def _bh_by_hand(q: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg without NaNs: ``adj_(i) = min_{j>=i} min(1, m p_(j) / j)``."""
    order = np.argsort(q, kind="stable")
    scaled = q[order] * q.size / np.arange(1, q.size + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    ranked = np.empty(q.size)
    ranked[order] = np.minimum(adjusted, 1.0)
    return ranked


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (FDR), in input order, NaN-aware like :func:`holm`.

    Uses ``scipy.stats.false_discovery_control`` (scipy >= 1.11) on the non-NaN entries, else the same
    formula by hand.
    """
    p, mask = _finite_pvalues(pvalues)
    out = np.full(p.shape, np.nan)
    if mask.any():
        fdc = getattr(stats, "false_discovery_control", None)
        out[mask] = fdc(p[mask], method="bh") if fdc is not None else _bh_by_hand(p[mask])
    return out
