"""Robustness summaries per (dataset, method, metric, seed), returned as tidy rows to aggregate and test.

Pure functions of result records (columns as in :mod:`harness.stats`). Summaries are computed per seed so
that :func:`harness.stats.aggregate` and :func:`harness.comparisons.compare_to_reference` (with
``cell=("dataset", "metric", "summary", "curve")``) treat them like any other metric.

Summaries (``summary`` column; ``curve`` is None except for curve summaries)
--------------------------------------------------------------------------
* ``clean``: the value of condition "full" (the one from protocol "fixed_pattern" when several
  protocols record "full"; more than one candidate left is an error).
* ``incomplete_mean``: mean over every "fixed_pattern" condition except "full".
* ``worst_pattern``: the worst of those (min if higher is better, else max); ``detail`` names it.
* ``incomplete_drop``: loss from clean to incomplete, signed so that positive = worse:
  ``clean - incomplete_mean`` if higher is better, else ``incomplete_mean - clean``.
* ``incomplete_ratio``: ``incomplete_mean / clean`` (unsigned; NaN when clean is 0).
* ``auc`` (per curve): :func:`trapezoid_auc` of the metric against the real severity values, normalised
  by the severity range, i.e. the mean level over the curve. If the curve has no point at severity 0 the
  clean value is inserted there (severity 0 = no corruption), so the range runs from 0.
* ``relative_auc`` (per curve): ``auc / clean``, i.e. the unnormalised area divided by
  ``clean * (severity range)``: the curve's mean level as a fraction of its clean value (1 = no loss;
  unsigned like ``incomplete_ratio``: below 1 is worse when higher is better, above 1 when lower is better).
  ``clean`` is the curve's point at severity 0 (its own, or the inserted clean value); NaN without one or
  when it is 0.
* ``max_severity_drop`` (per curve): loss from the severity-0 point to the point at the largest severity,
  signed so that positive = worse: ``f(0) - f(s_max)`` if higher is better, else ``f(s_max) - f(0)``;
  ``detail`` is ``s_max`` as text. NaN without a severity-0 point.
* ``effective_robustness`` (per curve, only with ``reference``): over the curve's severities s > 0 shared
  with the reference method of the same dataset, metric and seed,
  ``ER = sign · mean_s [ f(s) - (ref(s) + f(0) - ref(0)) ]``, the method's excess over the reference
  curve shifted to the method's clean value (MultiBench's definition, averaged instead of summed and
  without normalisation against any frozen table). ``sign`` is +1 if higher is better else -1, so
  positive = more robust than the reference. ``detail`` names the reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid

from harness.stats import require_columns, require_unique

CLEAN_CONDITION = "full"
FIXED_PATTERN = "fixed_pattern"
SUMMARY_KEY: tuple[str, ...] = ("dataset", "method", "metric", "seed")
SUMMARY_COLUMNS: list[str] = [*SUMMARY_KEY, "summary", "curve", "value", "detail"]
_REQUIRED = ("dataset", "method", "seed", "protocol", "condition", "severity", "curve", "metric", "value")


def trapezoid_auc(
    severities: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, normalize: bool = True
) -> float:
    """Area under values-vs-severity by the trapezoid rule on the actual (sorted) severity values.

    Points are sorted by severity first, so non-uniform and unsorted inputs are fine. With ``normalize``
    the area is divided by ``max(severity) - min(severity)``, giving the curve's mean level in the
    metric's units. Needs at least two distinct, finite severities; NaN values propagate to NaN.
    """
    x = np.asarray(severities, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"severities and values must be 1-D of equal length, got {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)) or len(np.unique(x)) != len(x) or len(x) < 2:
        raise ValueError(f"need at least two distinct finite severities, got {x.tolist()}")
    order = np.argsort(x)
    area = float(trapezoid(y[order], x[order]))
    return area / float(x.max() - x.min()) if normalize else area


def _clean_value(group: pd.DataFrame) -> float:
    full = group[group["condition"] == CLEAN_CONDITION]
    if (full["protocol"] == FIXED_PATTERN).any():
        full = full[full["protocol"] == FIXED_PATTERN]
    if len(full) > 1:
        protocols = list(full["protocol"])
        raise ValueError(f"condition {CLEAN_CONDITION!r} recorded by several protocols: {protocols}")
    return float(full["value"].iloc[0]) if len(full) else float("nan")


Summary = tuple[str, float, str | None]


def _pattern_summaries(group: pd.DataFrame, clean: float, higher: bool) -> list[Summary]:
    """(summary, value, detail) for the clean value and the fixed missing-modality patterns."""
    out: list[Summary] = [("clean", clean, None)] if np.isfinite(clean) else []
    patterns = group[(group["protocol"] == FIXED_PATTERN) & (group["condition"] != CLEAN_CONDITION)]
    patterns = patterns.dropna(subset=["value"])
    if patterns.empty:
        return out
    mean = float(patterns["value"].mean())
    worst = patterns.loc[patterns["value"].idxmin() if higher else patterns["value"].idxmax()]
    sign = 1.0 if higher else -1.0
    ratio = mean / clean if np.isfinite(clean) and clean != 0.0 else float("nan")
    return out + [
        ("incomplete_mean", mean, None),
        ("worst_pattern", float(worst["value"]), str(worst["condition"])),
        ("incomplete_drop", sign * (clean - mean), None),
        ("incomplete_ratio", ratio, None),
    ]


def _curves(group: pd.DataFrame, clean: float) -> dict[str, pd.Series]:
    """Per curve name, value indexed by sorted severity, with the clean point added at 0 if absent."""
    curves: dict[str, pd.Series] = {}
    on_curve = group[group["curve"].notna()]
    for name, points in on_curve.groupby("curve", sort=True):
        if points["severity"].isna().any() or points["severity"].duplicated().any():
            raise ValueError(f"curve {name!r} needs one finite severity per condition")
        series = pd.Series(points["value"].to_numpy(float), index=points["severity"].to_numpy(float))
        if 0.0 not in series.index and np.isfinite(clean):
            series.loc[0.0] = clean
        curves[str(name)] = series.sort_index()
    return curves


def _effective_robustness(curve: pd.Series, ref: pd.Series | None, higher: bool) -> float:
    if ref is None or 0.0 not in curve.index or 0.0 not in ref.index:
        return float("nan")
    shared = curve.index.intersection(ref.index)
    shared = shared[shared > 0.0]
    if len(shared) == 0:
        return float("nan")
    excess = curve.loc[shared] - (ref.loc[shared] + curve.loc[0.0] - ref.loc[0.0])
    return (1.0 if higher else -1.0) * float(excess.mean())


def _relative(curve: pd.Series, auc: float, higher: bool) -> list[tuple[str, float, str | None]]:
    """(summary, value, detail) of ``relative_auc`` and ``max_severity_drop`` from the curve's severity-0 point."""
    start = float(curve.loc[0.0]) if 0.0 in curve.index else float("nan")
    top = float(curve.index.max())
    ratio = auc / start if np.isfinite(start) and start != 0.0 else float("nan")
    drop = (1.0 if higher else -1.0) * (start - float(curve.loc[top])) if top > 0.0 else float("nan")
    return [("relative_auc", ratio, None), ("max_severity_drop", drop, f"{top:g}")]


def _curve_summaries(
    curves: dict[str, pd.Series], ref_curves: dict[str, pd.Series] | None, reference: str | None, higher: bool
) -> list[tuple[str, str, float, str | None]]:
    """(summary, curve, value, detail) for AUC, its relative forms and, with a reference, effective robustness."""
    out: list[tuple[str, str, float, str | None]] = []
    for name, curve in curves.items():
        auc = trapezoid_auc(curve.index, curve.to_numpy()) if len(curve) >= 2 else float("nan")
        out.append(("auc", name, auc, None))
        out += [(summary, name, value, detail) for summary, value, detail in _relative(curve, auc, higher)]
        if reference is not None:
            ref = (ref_curves or {}).get(name)
            out.append(("effective_robustness", name, _effective_robustness(curve, ref, higher), reference))
    return out


def robustness_summary(
    records: pd.DataFrame, higher_is_better: Mapping[str, bool], *, reference: str | None = None
) -> pd.DataFrame:
    """Per-seed robustness summaries in tidy long form (see the module docstring for every definition).

    Returns columns ``dataset, method, metric, seed, summary, curve, value, detail``. ``reference`` names
    the method, measured in the same records, against which effective robustness is computed; without it
    no ``effective_robustness`` rows are produced. A summary whose inputs are absent is omitted (pattern
    summaries) or NaN (effective robustness when the reference lacks the seed or the curve; the relative
    curve summaries when the curve has no severity-0 point).
    """
    require_columns(records, _REQUIRED)
    require_unique(records, [*SUMMARY_KEY, "protocol", "condition"])
    unknown = sorted(set(records["metric"]) - set(higher_is_better))
    if unknown:
        raise ValueError(f"higher_is_better lacks metric(s) {unknown}")
    groups = {key: group for key, group in records.groupby(list(SUMMARY_KEY), sort=True)}
    cleans = {key: _clean_value(group) for key, group in groups.items()}
    curves = {key: _curves(group, cleans[key]) for key, group in groups.items()}
    rows: list[tuple[object, ...]] = []
    for key in groups:
        dataset, _, metric, seed = key
        higher = bool(higher_is_better[metric])
        for summary, value, detail in _pattern_summaries(groups[key], cleans[key], higher):
            rows.append((*key, summary, None, value, detail))
        ref_curves = curves.get((dataset, reference, metric, seed)) if reference is not None else None
        for summary, curve, value, detail in _curve_summaries(curves[key], ref_curves, reference, higher):
            rows.append((*key, summary, curve, value, detail))
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return out.astype({"seed": np.int64, "value": float})
