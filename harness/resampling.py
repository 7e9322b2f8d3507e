"""Per-sample resampling statistics on one trained model's test predictions.

These tests condition on the trained models: they measure test-set sampling noise only, never the
seed-to-seed training variance (the seed-level tests of :mod:`harness.stats` do that). To use several
seeds at once, :func:`seed_stratified_randomization_test` pools them without mixing models.

Conventions
-----------
* ``pred`` is ``[N]`` (labels or regression outputs) or ``[N, C]`` (class scores); ``target`` is ``[N]``;
  row i of every prediction array belongs to ``target[i]``. Rows are resampled or swapped as units.
* ``metric_fn(pred, target) -> float`` is any metric of the harness; it is recomputed on every resample,
  so non-additive metrics (F1, correlation) are handled correctly.
* Randomness comes only from the ``numpy.random.Generator`` passed in; the same generator state gives
  the same result.
* Tests are two-sided; p-values are ``(count + 1) / (R + 1)`` and so never 0. A resampled statistic
  within 1e-12 of the observed one counts as at least as extreme (conservative against float noise).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats

from harness.stats import TestResult

MetricFn = Callable[[np.ndarray, np.ndarray], float]
_TIE = 1e-12
# scipy >= 1.15 spells the generator argument `rng`; older releases call it `random_state`.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


@dataclass(frozen=True)
class BootstrapCI:
    """A percentile bootstrap interval for a metric on the test set (n samples, R resamples)."""

    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int
    n_resamples: int


def _rows(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if target.ndim != 1 or pred.ndim not in (1, 2) or pred.shape[0] != target.shape[0]:
        raise ValueError(f"expected pred [N] or [N, C] and target [N], got {pred.shape} and {target.shape}")
    if target.shape[0] < 2:
        raise ValueError("resampling needs at least two test samples")
    return pred, target


def _pair(pred_a: np.ndarray, pred_b: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, ...]:
    a, y = _rows(pred_a, target)
    b, _ = _rows(pred_b, target)
    if a.shape != b.shape:
        raise ValueError(f"the two systems' predictions differ in shape: {a.shape} vs {b.shape}")
    return a, b, y


def _check_rng(rng: Any, count: int) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError("pass an explicit numpy.random.Generator, e.g. numpy.random.default_rng(0)")
    if count < 1:
        raise ValueError(f"the number of resamples must be positive, got {count}")


def _bootstrap(
    n: int, statistic: Callable[[np.ndarray], float], rng: np.random.Generator, n_resamples: int,
    confidence: float,
) -> Any:
    """``scipy.stats.bootstrap`` over row indices 0..n-1, so every array is resampled with the same rows."""
    return stats.bootstrap(
        (np.arange(n),), statistic, n_resamples=n_resamples, vectorized=False, method="percentile",
        confidence_level=confidence, **{_RNG_KEYWORD: rng},
    )


def bootstrap_ci(
    pred: np.ndarray, target: np.ndarray, metric_fn: MetricFn, *, rng: np.random.Generator,
    n_resamples: int = 1000, confidence: float = 0.95,
) -> BootstrapCI:
    """Two-sided percentile bootstrap interval of ``metric_fn`` over test samples.

    (pred, target) rows are resampled together with replacement (scipy's paired resampling, done on the
    row index so ``[N, C]`` scores work too). ``estimate`` is the metric on the full test set.
    """
    _check_rng(rng, n_resamples)
    pred, target = _rows(pred, target)
    res = _bootstrap(len(target), lambda i: metric_fn(pred[i], target[i]), rng, n_resamples, confidence)
    low, high = res.confidence_interval
    return BootstrapCI(float(metric_fn(pred, target)), float(low), float(high), confidence, len(target),
                       n_resamples)


Draws = Sequence[Sequence[np.ndarray]]  # [seed][draw] -> predictions [N] or [N, C] on one test set


def _draw_arrays(preds: Draws, target: np.ndarray) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """Validated ``[seed][draw]`` prediction arrays; every seed needs at least one draw."""
    if not preds or any(len(draws) == 0 for draws in preds):
        raise ValueError("need at least one seed's predictions, each with at least one draw")
    arrays = [[_rows(p, target)[0] for p in draws] for draws in preds]
    return arrays, np.asarray(target)


def _draw_mean(arrays: list[list[np.ndarray]], y: np.ndarray, metric_fn: MetricFn, i: np.ndarray) -> float:
    """Mean over seeds of the mean over draws of the metric on rows ``i`` (the tables' cell mean)."""
    return float(np.mean([np.mean([metric_fn(p[i], y[i]) for p in draws]) for draws in arrays]))


def _winner(gain: float) -> str:
    return "a better" if gain > 0 else "b better" if gain < 0 else "tie"


def draw_mean_bootstrap_ci(
    preds: Draws, target: np.ndarray, metric_fn: MetricFn, *, rng: np.random.Generator,
    n_resamples: int = 1000, confidence: float = 0.95,
) -> BootstrapCI:
    """Percentile bootstrap interval, over test samples, of the metric averaged over draws, then over seeds.

    ``preds[k][d]`` is seed k's predictions under draw d of one corruption level (e.g. mask seed d of a
    missing rate), all on the same test set ``target``. A draw is a different corruption of the same samples,
    so each resample draws one set of row indices and applies it to every draw of every seed; the metric
    is then averaged over the draws of each seed and over the seeds, as the tables average it.
    ``estimate`` is that mean on the full test set. With one draw per seed this is
    :func:`seed_mean_bootstrap_ci` (same generator state, same interval).
    """
    _check_rng(rng, n_resamples)
    arrays, y = _draw_arrays(preds, target)
    res = _bootstrap(len(y), lambda i: _draw_mean(arrays, y, metric_fn, i), rng, n_resamples, confidence)
    low, high = res.confidence_interval
    return BootstrapCI(_draw_mean(arrays, y, metric_fn, np.arange(len(y))), float(low), float(high), confidence,
                       len(y), n_resamples)


def seed_mean_bootstrap_ci(
    preds: Sequence[np.ndarray], target: np.ndarray, metric_fn: MetricFn, *, rng: np.random.Generator,
    n_resamples: int = 1000, confidence: float = 0.95,
) -> BootstrapCI:
    """Percentile bootstrap interval, over test samples, of the metric averaged over seeds.

    Element k of ``preds`` is seed k's predictions (``[N]`` or ``[N, C]``) on the same test set ``target``.
    Each resample draws one set of row indices and applies it to every seed (paired over seeds), then
    averages the per-seed metrics; ``estimate`` is that mean on the full test set. The interval reflects
    test-sample noise of the seed mean for these trained models, not seed-to-seed variance. With one seed
    it equals :func:`bootstrap_ci` under the same generator state.
    """
    if not preds:
        raise ValueError("need at least one seed's predictions")
    return draw_mean_bootstrap_ci([[p] for p in preds], target, metric_fn, rng=rng, n_resamples=n_resamples,
                                  confidence=confidence)


def seed_paired_bootstrap_test(
    preds_a: Draws, preds_b: Draws, target: np.ndarray, metric_fn: MetricFn, higher_is_better: bool, *,
    rng: np.random.Generator, n_resamples: int = 1000,
) -> TestResult:
    """Two-sided paired bootstrap test of H0: metric(a) = metric(b), pooling seeds and draws.

    ``preds_a[k][d]`` and ``preds_b[k][d]`` are the two systems' predictions for seed k under the same draw d,
    on the test set ``target``. D = (mean over seeds and draws of metric(a)) - (the same for b), and D*_r its
    value on R resamples of test rows shared by every seed, draw and system. The bootstrap distribution is
    centred on D to mimic H0: ``p = (1 + #{|D*_r - D| >= |D|}) / (R + 1)`` (two-sided version of the shifted
    test of Berg-Kirkpatrick et al., 2012). ``statistic`` is the improvement of a over b (D if
    higher_is_better else -D), ``mean_diff`` is D, ``n`` the number of test samples; ``note`` names the
    better system and the seeds pooled.
    """
    _check_rng(rng, n_resamples)
    a, y = _draw_arrays(preds_a, target)
    b, _ = _draw_arrays(preds_b, target)
    if [[p.shape for p in d] for d in a] != [[p.shape for p in d] for d in b]:
        raise ValueError("the two systems need the same seeds and draws, with predictions of the same shape")

    def delta(i: np.ndarray) -> float:
        return _draw_mean(a, y, metric_fn, i) - _draw_mean(b, y, metric_fn, i)

    observed = delta(np.arange(len(y)))
    res = _bootstrap(len(y), delta, rng, n_resamples, 0.95)
    count = int(np.sum(np.abs(res.bootstrap_distribution - observed) >= abs(observed) - _TIE))
    gain = observed if higher_is_better else -observed
    return TestResult("seed_paired_bootstrap", gain, (count + 1) / (n_resamples + 1), len(y), observed,
                      f"two-sided; {_winner(gain)}; {len(a)} seed(s), rows shared across seeds")


def paired_bootstrap_test(
    pred_a: np.ndarray, pred_b: np.ndarray, target: np.ndarray, metric_fn: MetricFn,
    higher_is_better: bool, *, rng: np.random.Generator, n_resamples: int = 1000,
) -> TestResult:
    """Two-sided paired bootstrap test of H0: metric(a) = metric(b) on the test distribution, one seed.

    :func:`seed_paired_bootstrap_test` with one seed and one draw: with D = metric(a) - metric(b) on the
    test set and D*_r its value on R paired resamples (the same rows for a, b and target),
    ``p = (1 + #{|D*_r - D| >= |D|}) / (R + 1)``. ``statistic`` is the improvement of a over b (D if
    higher_is_better else -D), ``mean_diff`` is D, ``n`` the number of test samples and ``note`` names the
    better system.
    """
    _pair(pred_a, pred_b, target)  # shape errors name both systems
    res = seed_paired_bootstrap_test([[pred_a]], [[pred_b]], target, metric_fn, higher_is_better, rng=rng,
                                     n_resamples=n_resamples)
    return replace(res, test="paired_bootstrap", note=f"two-sided; {_winner(res.statistic)}")


def _swap(first: np.ndarray, second: np.ndarray, swap: np.ndarray) -> np.ndarray:
    """``first`` with the rows where ``swap`` is True taken from ``second``."""
    return np.where(swap.reshape((-1,) + (1,) * (first.ndim - 1)), second, first)


def seed_stratified_randomization_test(
    preds_a: Sequence[np.ndarray], preds_b: Sequence[np.ndarray], targets: Sequence[np.ndarray],
    metric_fn: MetricFn, *, rng: np.random.Generator, n_permutations: int = 1000,
) -> TestResult:
    """Two-sided approximate randomization test pooling seeds, swapping rows only within each seed.

    Element k of each sequence is one seed (the models of a and b trained with that seed, on the same
    test set). Statistic: T = mean over seeds of metric(a_k) - metric(b_k), each metric computed within
    its seed. Each permutation swaps a's and b's prediction of every sample independently with
    probability 1/2, inside each seed; ``p = (1 + #{|T_r| >= |T|}) / (R + 1)``. ``n`` is the total
    number of test samples, ``mean_diff`` = T.
    """
    _check_rng(rng, n_permutations)
    strata = [_pair(a, b, y) for a, b, y in zip(preds_a, preds_b, targets, strict=True)]
    if not strata:
        raise ValueError("need at least one seed")

    def mean_delta(swaps: list[np.ndarray]) -> float:
        deltas = [metric_fn(_swap(a, b, s), y) - metric_fn(_swap(b, a, s), y)
                  for (a, b, y), s in zip(strata, swaps, strict=True)]
        return float(np.mean(deltas))

    observed = mean_delta([np.zeros(len(y), dtype=bool) for _, _, y in strata])
    count = 0
    for _ in range(n_permutations):
        swaps = [rng.random(len(y)) < 0.5 for _, _, y in strata]
        count += int(abs(mean_delta(swaps)) >= abs(observed) - _TIE)
    n = sum(len(y) for _, _, y in strata)
    return TestResult("seed_stratified_randomization", observed, (count + 1) / (n_permutations + 1), n,
                      observed, f"two-sided; {len(strata)} seed(s), swaps within seed")


def approximate_randomization_test(
    pred_a: np.ndarray, pred_b: np.ndarray, target: np.ndarray, metric_fn: MetricFn, *,
    rng: np.random.Generator, n_permutations: int = 1000,
) -> TestResult:
    """Two-sided approximate randomization test for one seed.

    Each permutation swaps the two systems' predictions of every sample independently with probability
    1/2; with D = metric(a) - metric(b), ``p = (1 + #{|D_r| >= |D|}) / (R + 1)``. ``statistic`` and
    ``mean_diff`` are D (sign: positive means a scored higher); ``n`` is the number of test samples.
    """
    res = seed_stratified_randomization_test([pred_a], [pred_b], [target], metric_fn, rng=rng,
                                             n_permutations=n_permutations)
    return replace(res, test="approximate_randomization", note="two-sided")
