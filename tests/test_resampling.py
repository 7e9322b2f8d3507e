"""Resampling over test samples: bootstrap intervals (rows, class scores, averaged draws) and the paired
bootstrap and randomisation tests, checked against scipy and by hand."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from records import accuracy
from scipy import stats as sps

from harness.resampling import (
    approximate_randomization_test,
    bootstrap_ci,
    draw_mean_bootstrap_ci,
    paired_bootstrap_test,
    seed_mean_bootstrap_ci,
    seed_paired_bootstrap_test,
    seed_stratified_randomization_test,
)

# ---------------------------------------------------------------- bootstrap CI


def test_bootstrap_ci_is_reproducible_and_covers_the_true_mean() -> None:
    pred = np.random.default_rng(123).normal(2.0, 1.0, size=400)
    target = np.zeros(400)
    mean_error = lambda p, t: float(np.mean(p - t))  # noqa: E731
    first = bootstrap_ci(pred, target, mean_error, rng=np.random.default_rng(0), n_resamples=2000)
    again = bootstrap_ci(pred, target, mean_error, rng=np.random.default_rng(0), n_resamples=2000)
    other = bootstrap_ci(pred, target, mean_error, rng=np.random.default_rng(1), n_resamples=2000)
    assert first == again and first != other
    assert first.ci_low < 2.0 < first.ci_high
    assert first.estimate == pytest.approx(pred.mean())
    # the width matches normal theory, 2 * 1.96 * sigma / sqrt(n), to within 15 %
    assert first.ci_high - first.ci_low == pytest.approx(2 * 1.96 / math.sqrt(400), rel=0.15)


def test_bootstrap_ci_resamples_rows_of_class_scores() -> None:
    rng = np.random.default_rng(5)
    target = rng.integers(0, 3, size=200)
    scores = rng.normal(size=(200, 3))
    scores[np.arange(150), target[:150]] += 10.0  # exactly 150 / 200 rows correct, if nothing else wins
    result = bootstrap_ci(scores, target, accuracy, rng=np.random.default_rng(0), n_resamples=500)
    assert result.estimate >= 0.75 and result.ci_low < result.estimate < result.ci_high


# ---------------------------------------------------------------- per-sample tests


def test_randomization_and_bootstrap_tests_separate_different_from_identical_systems() -> None:
    rng = np.random.default_rng(7)
    target = rng.integers(0, 2, size=300)
    good = np.where(rng.random(300) < 0.9, target, 1 - target)  # about 90 % correct
    chance = rng.integers(0, 2, size=300)  # about 50 % correct
    ar = approximate_randomization_test(good, chance, target, accuracy, rng=np.random.default_rng(0),
                                        n_permutations=500)
    # no permutation is as extreme, so p = (0 + 1) / (R + 1)
    assert ar.p_value == 1 / 501 and ar.statistic > 0.3 and ar.n == 300
    same = approximate_randomization_test(good, good, target, accuracy, rng=np.random.default_rng(0),
                                          n_permutations=500)
    assert same.p_value == 1.0
    boot = paired_bootstrap_test(good, chance, target, accuracy, True, rng=np.random.default_rng(0),
                                 n_resamples=500)
    assert boot.p_value < 0.01 and boot.statistic > 0 and "a better" in boot.note
    error_rate = lambda p, t: 1.0 - accuracy(p, t)  # noqa: E731  (lower is better)
    flipped = paired_bootstrap_test(good, chance, target, error_rate, False, rng=np.random.default_rng(0),
                                    n_resamples=500)
    assert flipped.statistic > 0 and flipped.mean_diff < 0 and "a better" in flipped.note
    assert paired_bootstrap_test(good, good, target, accuracy, True, rng=np.random.default_rng(0),
                                 n_resamples=200).p_value == 1.0


def test_seed_stratified_randomization_pools_seeds() -> None:
    rng = np.random.default_rng(11)
    targets = [rng.integers(0, 3, size=80) for _ in range(3)]
    good = [np.where(rng.random(80) < 0.8, t, (t + 1) % 3) for t in targets]
    weak = [np.where(rng.random(80) < 0.5, t, (t + 1) % 3) for t in targets]
    result = seed_stratified_randomization_test(good, weak, targets, accuracy, rng=np.random.default_rng(0),
                                                n_permutations=400)
    triples = zip(good, weak, targets, strict=True)
    expected_t = np.mean([accuracy(g, t) - accuracy(w, t) for g, w, t in triples])
    assert result.statistic == pytest.approx(expected_t) and result.n == 240 and result.p_value < 0.01
    null = seed_stratified_randomization_test(good, good, targets, accuracy, rng=np.random.default_rng(0),
                                              n_permutations=100)
    assert null.p_value == 1.0


def test_seed_mean_bootstrap_ci_matches_scipy_paired_bootstrap() -> None:
    rng = np.random.default_rng(11)
    target = rng.normal(size=120)
    preds = [target + rng.normal(scale=s, size=120) for s in (0.5, 1.0, 1.5)]
    mae = lambda p, t: float(np.mean(np.abs(p - t)))  # noqa: E731
    ours = seed_mean_bootstrap_ci(preds, target, mae, rng=np.random.default_rng(3), n_resamples=999)

    def seed_mean(*arrays: np.ndarray) -> float:  # scipy resamples the same rows of every array (paired)
        *ps, t = arrays
        return float(np.mean([mae(p, t) for p in ps]))

    keyword = "rng" if "rng" in __import__("inspect").signature(sps.bootstrap).parameters else "random_state"
    ref = sps.bootstrap((*preds, target), seed_mean, paired=True, vectorized=False, n_resamples=999,
                        method="percentile", **{keyword: np.random.default_rng(3)})
    assert ours.estimate == pytest.approx(np.mean([mae(p, target) for p in preds]))
    assert (ours.ci_low, ours.ci_high) == pytest.approx(tuple(ref.confidence_interval))
    single = seed_mean_bootstrap_ci(preds[:1], target, mae, rng=np.random.default_rng(4), n_resamples=500)
    assert single == bootstrap_ci(preds[0], target, mae, rng=np.random.default_rng(4), n_resamples=500)
    with pytest.raises(ValueError, match="at least one seed"):
        seed_mean_bootstrap_ci([], target, mae, rng=np.random.default_rng(0))


def _scipy_paired(arrays: tuple[np.ndarray, ...], statistic: Callable[..., float], seed: int,
                  n_resamples: int) -> Any:
    """scipy's own paired bootstrap: the same resampled rows for every array, percentile intervals."""
    keyword = "rng" if "rng" in __import__("inspect").signature(sps.bootstrap).parameters else "random_state"
    return sps.bootstrap(arrays, statistic, paired=True, vectorized=False, n_resamples=n_resamples,
                         method="percentile", **{keyword: np.random.default_rng(seed)})


def draws_example() -> tuple[list[list[np.ndarray]], np.ndarray]:
    """Two seeds x three mask draws of labels on 60 shared test samples."""
    rng = np.random.default_rng(21)
    target = rng.integers(0, 2, size=60)
    flip = lambda p: np.where(rng.random(60) < p, 1 - target, target)  # noqa: E731
    return [[flip(0.1), flip(0.2), flip(0.3)], [flip(0.15), flip(0.25), flip(0.35)]], target


def test_draw_mean_bootstrap_ci_averages_draws_then_seeds_on_shared_rows() -> None:
    preds, target = draws_example()
    ours = draw_mean_bootstrap_ci(preds, target, accuracy, rng=np.random.default_rng(5), n_resamples=600)

    def by_hand(*arrays: np.ndarray) -> float:  # [a00, a01, a02, a10, a11, a12, target]
        *flat, t = arrays
        seeds = (flat[:3], flat[3:])
        return float(np.mean([np.mean([accuracy(p, t) for p in draws]) for draws in seeds]))

    ref = _scipy_paired((*preds[0], *preds[1], target), by_hand, 5, 600)
    assert ours.estimate == pytest.approx(by_hand(*preds[0], *preds[1], target))
    assert (ours.ci_low, ours.ci_high) == pytest.approx(tuple(ref.confidence_interval))
    one = [[draws[0]] for draws in preds]  # one draw per seed: the seed-mean interval, same generator state
    assert draw_mean_bootstrap_ci(one, target, accuracy, rng=np.random.default_rng(2), n_resamples=300) == \
        seed_mean_bootstrap_ci([d[0] for d in one], target, accuracy, rng=np.random.default_rng(2), n_resamples=300)
    with pytest.raises(ValueError, match="at least one draw"):
        draw_mean_bootstrap_ci([[], [preds[0][0]]], target, accuracy, rng=np.random.default_rng(0))


def test_seed_paired_bootstrap_test_against_scipy_distribution_by_hand() -> None:
    good, target = draws_example()
    weak = [[np.where(np.arange(60) % 3 == k, 1 - p, p) for k, p in enumerate(draws)] for draws in good]
    res = seed_paired_bootstrap_test(good, weak, target, accuracy, True, rng=np.random.default_rng(9),
                                     n_resamples=400)

    def delta(*arrays: np.ndarray) -> float:  # mean over seeds and draws of acc(a) - the same for b
        *flat, t = arrays
        return float(np.mean([accuracy(p, t) for p in flat[:6]]) - np.mean([accuracy(p, t) for p in flat[6:]]))

    arrays = (*good[0], *good[1], *weak[0], *weak[1], target)
    observed = delta(*arrays)
    dist = _scipy_paired(arrays, delta, 9, 400).bootstrap_distribution
    expected_p = (1 + np.sum(np.abs(dist - observed) >= abs(observed) - 1e-12)) / 401
    assert res.mean_diff == pytest.approx(observed) and res.statistic == pytest.approx(observed) and res.n == 60
    assert res.p_value == pytest.approx(expected_p) and "2 seed(s)" in res.note
    flipped = seed_paired_bootstrap_test(good, weak, target, lambda p, t: 1 - accuracy(p, t), False,
                                         rng=np.random.default_rng(9), n_resamples=400)
    assert flipped.statistic == pytest.approx(observed) and flipped.p_value == pytest.approx(expected_p)
    single = seed_paired_bootstrap_test([[good[0][0]]], [[weak[0][0]]], target, accuracy, True,
                                        rng=np.random.default_rng(3), n_resamples=200)
    classic = paired_bootstrap_test(good[0][0], weak[0][0], target, accuracy, True, rng=np.random.default_rng(3),
                                    n_resamples=200)
    assert (single.p_value, single.statistic) == (classic.p_value, classic.statistic)
    with pytest.raises(ValueError, match="same seeds and draws"):
        seed_paired_bootstrap_test(good, [weak[0]], target, accuracy, True, rng=np.random.default_rng(0))
