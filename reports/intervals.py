"""Per-sample bootstrap intervals read from the stored predictions (the ``--ci bootstrap`` option).

The stored per-sample predictions of every seed are passed to
:func:`harness.resampling.seed_mean_bootstrap_ci`, which resamples test samples (the same rows for every
seed) and recomputes the metric: an interval for the seed mean that reflects test-set sampling noise,
where the default t-interval reflects seed-to-seed training noise. Nothing is predicted again: before
resampling, the metric recomputed on the stored predictions must reproduce the stored record.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from harness.registry import METRICS
from harness.resampling import seed_mean_bootstrap_ci
from reports.load import Results


def _seed_predictions(results: Results, dataset: str, method: str, seeds: Sequence[int]) -> tuple[list, np.ndarray]:
    preds = [results.predictions(dataset, method, s) for s in seeds]
    target = preds[0]["target"]
    for seed, p in zip(seeds, preds, strict=True):
        if not np.array_equal(p["ids"], preds[0]["ids"]) or not np.array_equal(p["target"], target):
            raise ValueError(f"{dataset}/{method}: seed {seed} was tested on other samples than seed {seeds[0]}")
    return preds, target


def bootstrap_intervals(results: Results, dataset: str, protocol: str, metrics: Sequence[str], *,
                        rng: np.random.Generator, n_resamples: int = 1000, confidence: float = 0.95) -> pd.DataFrame:
    """Columns ``method, column (condition), metric, ci_low, ci_high`` for every condition of ``protocol``.

    Iterates methods, conditions and metrics in sorted order so that one generator gives reproducible
    intervals.
    """
    rec = results.records
    rec = rec[(rec["dataset"] == dataset) & (rec["protocol"] == protocol) & rec["metric"].isin(list(metrics))]
    rows = []
    for method, group in rec.groupby("method", sort=True):
        seeds = sorted(int(s) for s in group["seed"].unique())
        preds, target = _seed_predictions(results, dataset, str(method), seeds)
        stored = group.set_index(["condition", "metric", "seed"])["value"]
        for condition in sorted(group["condition"].unique()):
            names = [list(p["conditions"]) for p in preds]
            k = [n.index(f"{protocol}/{condition}") for n in names]
            for metric in sorted(group.loc[group["condition"] == condition, "metric"].unique()):
                spec = METRICS.get(metric)
                arrays = [p["pred"][i] for p, i in zip(preds, k, strict=True)]
                expected = [stored[(condition, metric, s)] for s in seeds]
                if not np.allclose([spec(a, target) for a in arrays], expected, rtol=1e-6, equal_nan=True):
                    raise ValueError(f"stored predictions of {dataset}/{method}/{condition} do not reproduce the "
                                     f"stored {metric}; the run directory is inconsistent")
                ci = seed_mean_bootstrap_ci(arrays, target, spec, rng=rng, n_resamples=n_resamples,
                                            confidence=confidence)
                rows.append((method, condition, metric, ci.ci_low, ci.ci_high))
    return pd.DataFrame(rows, columns=["method", "column", "metric", "ci_low", "ci_high"])
