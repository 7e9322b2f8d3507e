"""Per-sample statistics read from the stored predictions: ``--ci bootstrap`` and ``--test randomization|bootstrap``.

The stored per-sample predictions are passed to the pure functions of :mod:`harness.resampling`:

* :func:`bootstrap_intervals` - :func:`~harness.resampling.draw_mean_bootstrap_ci` resamples test samples
  (the same rows for every seed and every draw) and recomputes the metric: an interval for the seed mean
  that reflects test-set sampling noise, where the default t-interval reflects seed-to-seed training noise;
* :func:`persample_pvalues` - each method against the reference on their common seeds, by
  :func:`~harness.resampling.seed_stratified_randomization_test` (predictions swapped within each seed;
  single conditions only) or :func:`~harness.resampling.seed_paired_bootstrap_test` (test rows resampled
  jointly for every seed and draw).

A table column that averages several draws of one corruption level (e.g. the mask seeds of a missing rate,
see :func:`reports.views.draw_labels`) is resampled as a whole: one set of rows for every draw, the metric
averaged over the draws of each seed, then over seeds, exactly as the table's mean is formed.

Nothing is predicted again: the metric recomputed on the stored predictions must reproduce the stored
record before any resampling. Methods, columns and metrics are visited in sorted order, so one generator
gives reproducible results.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from harness.registry import METRICS
from harness.resampling import draw_mean_bootstrap_ci, seed_paired_bootstrap_test, seed_stratified_randomization_test
from reports.load import Results
from reports.views import draw_labels

# seed -> {draw condition -> predictions}; one draw for a column that is a single condition
SeedDraws = dict[int, dict[str, np.ndarray]]


def _seed_predictions(results: Results, dataset: str, method: str, seeds: Sequence[int]) -> tuple[list, np.ndarray]:
    preds = [results.predictions(dataset, method, s) for s in seeds]
    target = preds[0]["target"]
    for seed, p in zip(seeds, preds, strict=True):
        if not np.array_equal(p["ids"], preds[0]["ids"]) or not np.array_equal(p["target"], target):
            raise ValueError(f"{dataset}/{method}: seed {seed} was tested on other samples than seed {seeds[0]}")
    return preds, target


def _select(results: Results, dataset: str, protocol: str, metrics: Sequence[str], columns: Sequence[str] | None,
            curve: str | None) -> pd.DataFrame:
    """The raw records behind the table columns ``columns`` (None: all) of one protocol's curve, labelled."""
    rec = results.records
    rec = rec[(rec["dataset"] == dataset) & (rec["protocol"] == protocol) & rec["metric"].isin(list(metrics))]
    rec = rec[rec["curve"] == curve] if curve is not None else rec[rec["curve"].isna()]
    rec = rec.assign(column=draw_labels(rec))
    return rec if columns is None else rec[rec["column"].isin(list(columns))]


def _column_arrays(results: Results, dataset: str, protocol: str, metrics: Sequence[str],
                   columns: Sequence[str] | None, curve: str | None
                   ) -> Iterator[tuple[str, str, str, SeedDraws, np.ndarray]]:
    """Yield (method, column, metric, {seed: {draw condition: pred array}}, target), each array checked
    against its stored record, for the columns of ``protocol`` on ``curve`` (None: conditions without one)."""
    rec = _select(results, dataset, protocol, metrics, columns, curve)
    for method, group in rec.groupby("method", sort=True):
        seeds = sorted(int(s) for s in group["seed"].unique())
        preds, target = _seed_predictions(results, dataset, str(method), seeds)
        stored = group.set_index(["condition", "metric", "seed"])["value"]
        for (column, metric), rows in group.groupby(["column", "metric"], sort=True):
            spec = METRICS.get(str(metric))
            draws: SeedDraws = {}
            scored = None  # the samples the column's conditions score (all unless a condition cannot score some)
            for condition, seed in rows[["condition", "seed"]].itertuples(index=False):
                p = preds[seeds.index(int(seed))]
                k = list(p["conditions"]).index(f"{protocol}/{condition}")
                keep = p["evaluated"][k] if "evaluated" in p else np.ones(len(target), dtype=bool)
                if scored is not None and not np.array_equal(keep, scored):
                    raise ValueError(f"{dataset}/{method}/{column}: its draws score different samples")
                scored, array = keep, p["pred"][k][keep]
                if not np.allclose(spec(array, target[keep]), stored[(condition, metric, seed)], rtol=1e-6,
                                   equal_nan=True):
                    raise ValueError(f"stored predictions of {dataset}/{method}/{condition} do not reproduce the "
                                     f"stored {metric}; the run directory is inconsistent")
                draws.setdefault(int(seed), {})[str(condition)] = array
            yield str(method), str(column), str(metric), dict(sorted(draws.items())), target[scored]


def _nested(draws: SeedDraws, seeds: Sequence[int]) -> list[list[np.ndarray]]:
    """``[seed][draw]`` arrays, draws in name order (so that two methods' draw d is the same corruption)."""
    return [[draws[s][c] for c in sorted(draws[s])] for s in seeds]


def bootstrap_intervals(results: Results, dataset: str, protocol: str, metrics: Sequence[str], *,
                        rng: np.random.Generator, conditions: Sequence[str] | None = None, curve: str | None = None,
                        n_resamples: int = 1000, confidence: float = 0.95) -> pd.DataFrame:
    """Columns ``method, column, metric, ci_low, ci_high`` for the table columns ``conditions`` of
    ``protocol`` on ``curve`` (averaged draws included)."""
    rows = []
    for method, column, metric, draws, target in _column_arrays(results, dataset, protocol, metrics, conditions,
                                                                curve):
        ci = draw_mean_bootstrap_ci(_nested(draws, sorted(draws)), target, METRICS.get(metric), rng=rng,
                                    n_resamples=n_resamples, confidence=confidence)
        rows.append((method, column, metric, ci.ci_low, ci.ci_high))
    return pd.DataFrame(rows, columns=["method", "column", "metric", "ci_low", "ci_high"])


def _test(test: str, a: SeedDraws, b: SeedDraws, seeds: list[int], target: np.ndarray, metric: str,
          rng: np.random.Generator, count: int) -> tuple[float, str]:
    """(p-value, note) of one per-sample test on the common seeds; NaN with a reason where it cannot run."""
    if any(sorted(a[s]) != sorted(b[s]) for s in seeds):
        return float("nan"), "not computable (the two methods have different draws)"
    spec = METRICS.get(metric)
    if test == "bootstrap":
        res = seed_paired_bootstrap_test(_nested(a, seeds), _nested(b, seeds), target, spec, spec.higher_is_better,
                                         rng=rng, n_resamples=count)
        return res.p_value, res.note
    if any(len(a[s]) > 1 for s in seeds):  # swapping needs one prediction per sample and seed
        return float("nan"), ""
    res = seed_stratified_randomization_test([a[s][c] for s in seeds for c in a[s]],
                                             [b[s][c] for s in seeds for c in b[s]], [target] * len(seeds), spec,
                                             rng=rng, n_permutations=count)
    return res.p_value, res.note


def persample_pvalues(results: Results, dataset: str, protocol: str, metrics: Sequence[str], reference: str, *,
                      test: str, rng: np.random.Generator, conditions: Sequence[str] | None = None,
                      curve: str | None = None, count: int = 1000) -> pd.DataFrame:
    """Columns ``method, column, metric, p_value, n_pairs (common seeds), note``: every method but the
    reference, tested against the reference on their common seeds (uncorrected p-values). ``test`` is
    ``randomization`` (columns of one condition only; averaged draws get NaN without a note, i.e. untested)
    or ``bootstrap``; ``count`` is the number of permutations or resamples."""
    if test not in ("randomization", "bootstrap"):
        raise ValueError(f"unknown per-sample test {test!r}; valid: randomization, bootstrap")
    found = _column_arrays(results, dataset, protocol, metrics, conditions, curve)
    cells = {(m, c, k): (d, t) for m, c, k, d, t in found}
    rows = []
    for (method, column, metric), (draws, target) in cells.items():
        ref = cells.get((reference, column, metric))
        if method == reference or ref is None:
            continue
        seeds = sorted(set(draws) & set(ref[0]))
        if not seeds:
            rows.append((method, column, metric, np.nan, 0, "not computable (no common seed)"))
            continue
        p_value, note = _test(test, draws, ref[0], seeds, target, metric, rng, count)
        rows.append((method, column, metric, p_value, len(seeds), note))
    return pd.DataFrame(rows, columns=["method", "column", "metric", "p_value", "n_pairs", "note"])
