"""Per-sample statistics read from the stored predictions: ``--ci bootstrap`` and ``--test randomization``.

The stored per-sample predictions are passed to the pure functions of :mod:`harness.resampling`:

* :func:`bootstrap_intervals` - :func:`~harness.resampling.seed_mean_bootstrap_ci` resamples test samples
  (the same rows for every seed) and recomputes the metric: an interval for the seed mean that reflects
  test-set sampling noise, where the default t-interval reflects seed-to-seed training noise;
* :func:`randomization_pvalues` - :func:`~harness.resampling.seed_stratified_randomization_test` of each
  method against the reference on their common seeds, swapping predictions within each seed only.

Nothing is predicted again: the metric recomputed on the stored predictions must reproduce the stored
record before any resampling. Methods, conditions and metrics are visited in sorted order, so one generator
gives reproducible results.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from harness.registry import METRICS
from harness.resampling import seed_mean_bootstrap_ci, seed_stratified_randomization_test
from reports.load import Results


def _seed_predictions(results: Results, dataset: str, method: str, seeds: Sequence[int]) -> tuple[list, np.ndarray]:
    preds = [results.predictions(dataset, method, s) for s in seeds]
    target = preds[0]["target"]
    for seed, p in zip(seeds, preds, strict=True):
        if not np.array_equal(p["ids"], preds[0]["ids"]) or not np.array_equal(p["target"], target):
            raise ValueError(f"{dataset}/{method}: seed {seed} was tested on other samples than seed {seeds[0]}")
    return preds, target


def _condition_arrays(results: Results, dataset: str, protocol: str, metrics: Sequence[str],
                      conditions: Sequence[str] | None):
    """Yield (method, condition, metric, {seed: pred array}, target) checked against the stored records,
    for ``conditions`` of ``protocol`` (None: all of them)."""
    rec = results.records
    rec = rec[(rec["dataset"] == dataset) & (rec["protocol"] == protocol) & rec["metric"].isin(list(metrics))]
    if conditions is not None:
        rec = rec[rec["condition"].isin(list(conditions))]
    for method, group in rec.groupby("method", sort=True):
        seeds = sorted(int(s) for s in group["seed"].unique())
        preds, target = _seed_predictions(results, dataset, str(method), seeds)
        stored = group.set_index(["condition", "metric", "seed"])["value"]
        for condition in sorted(group["condition"].unique()):
            k = [list(p["conditions"]).index(f"{protocol}/{condition}") for p in preds]
            for metric in sorted(group.loc[group["condition"] == condition, "metric"].unique()):
                spec = METRICS.get(metric)
                arrays = {s: p["pred"][i] for s, p, i in zip(seeds, preds, k, strict=True)}
                expected = [stored[(condition, metric, s)] for s in seeds]
                if not np.allclose([spec(a, target) for a in arrays.values()], expected, rtol=1e-6, equal_nan=True):
                    raise ValueError(f"stored predictions of {dataset}/{method}/{condition} do not reproduce the "
                                     f"stored {metric}; the run directory is inconsistent")
                yield str(method), str(condition), metric, arrays, target


def bootstrap_intervals(results: Results, dataset: str, protocol: str, metrics: Sequence[str], *,
                        rng: np.random.Generator, conditions: Sequence[str] | None = None, n_resamples: int = 1000,
                        confidence: float = 0.95) -> pd.DataFrame:
    """Columns ``method, column (condition), metric, ci_low, ci_high`` for ``conditions`` of ``protocol``."""
    rows = []
    for method, condition, metric, arrays, target in _condition_arrays(results, dataset, protocol, metrics,
                                                                       conditions):
        ci = seed_mean_bootstrap_ci(list(arrays.values()), target, METRICS.get(metric), rng=rng,
                                    n_resamples=n_resamples, confidence=confidence)
        rows.append((method, condition, metric, ci.ci_low, ci.ci_high))
    return pd.DataFrame(rows, columns=["method", "column", "metric", "ci_low", "ci_high"])


def randomization_pvalues(results: Results, dataset: str, protocol: str, metrics: Sequence[str], reference: str, *,
                          rng: np.random.Generator, conditions: Sequence[str] | None = None,
                          n_permutations: int = 1000) -> pd.DataFrame:
    """Columns ``method, column, metric, p_value, n_pairs (common seeds), note``: every method but the
    reference, tested against the reference on their common seeds (uncorrected p-values)."""
    arrays = _condition_arrays(results, dataset, protocol, metrics, conditions)
    cells = {(m, c, k): (a, t) for m, c, k, a, t in arrays}
    rows = []
    for (method, condition, metric), (arrays, target) in cells.items():
        ref = cells.get((reference, condition, metric))
        if method == reference or ref is None:
            continue
        seeds = sorted(set(arrays) & set(ref[0]))
        if not seeds:
            rows.append((method, condition, metric, np.nan, 0, "not computable (no common seed)"))
            continue
        res = seed_stratified_randomization_test([arrays[s] for s in seeds], [ref[0][s] for s in seeds],
                                                 [target] * len(seeds), METRICS.get(metric), rng=rng,
                                                 n_permutations=n_permutations)
        rows.append((method, condition, metric, res.p_value, len(seeds), res.note))
    return pd.DataFrame(rows, columns=["method", "column", "metric", "p_value", "n_pairs", "note"])
