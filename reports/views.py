"""What each table and figure shows: per-seed values (``method, seed, column, metric, value``) and columns.

Pure functions of the tidy records. Three table kinds, all with rows = methods:

* :func:`condition_view` - columns = the conditions of one protocol without a curve (for ``fixed_pattern``:
  ``full``, each pattern, then ``mean (incomplete)``), or of one severity curve, by increasing severity;
* :func:`metric_view` - columns = metrics, at one condition (``full`` of ``fixed_pattern`` by default);
* :func:`summary_view` - columns = robustness summaries (:func:`harness.robustness.robustness_summary`):
  clean, mean and worst incomplete pattern, drop from clean, and per curve its AUC over the real severities
  and the effective robustness against the reference.

Several metrics in a condition or summary view make composite cells (``acc2 / f1 / acc7``).
Every derived column (incomplete mean, drop, AUC) is computed per seed first and then aggregated.

Draws: conditions of one curve at one severity (the mask seeds of ``random_missing``) are repeated draws of
one corruption level. :func:`collapse_draws` averages them per training seed into one row named by the
parts of their names they share (``r=0.3/seed=0..2`` -> ``r=0.3``), before any table, summary or figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from harness.metrics import MetricSpec
from harness.registry import METHODS, METRICS
from harness.robustness import CLEAN_CONDITION, FIXED_PATTERN, robustness_summary
from reports.names import metric_label
from reports.tables import CellKey, Column, Slot

MEAN_INCOMPLETE = "mean (incomplete)"
VALUE_COLUMNS = ["method", "seed", "column", "metric", "value"]
_SUMMARIES = {"clean": "clean", "incomplete_mean": MEAN_INCOMPLETE, "worst_pattern": "worst pattern",
              "incomplete_drop": "drop (incomplete)"}


@dataclass(frozen=True)
class View:
    """Inputs of one table: per-seed values, columns, and the protocols (name, version, hash) they come from."""

    kind: str
    dataset: str
    title: str
    metrics: tuple[str, ...]
    values: pd.DataFrame
    columns: tuple[Column, ...]
    protocols: tuple[tuple[str, int, str], ...]
    condition_of: dict[str, tuple[str, str]]  # column -> (protocol, condition), for reported values
    legend: str = ""  # what derived columns mean, for the caption
    curve: str | None = None  # the curve of a condition view (None: conditions without a curve)


def metric_slot(metric: str, column: str, *, higher: bool | None = None, scale: float | None = None,
                fmt: str | None = None, relative: bool = False) -> Slot:
    spec: MetricSpec = METRICS.get(metric)
    return Slot(column, metric, spec.higher_is_better if higher is None else higher,
                spec.scale if scale is None else scale, spec.fmt if fmt is None else fmt, relative)


def _protocols(records: pd.DataFrame) -> tuple[tuple[str, int, str], ...]:
    defs = records[["protocol", "protocol_version", "protocol_hash"]].drop_duplicates()
    return tuple((str(p), int(v), str(h)) for p, v, h in defs.itertuples(index=False))


def _select(records: pd.DataFrame, dataset: str, metrics: Sequence[str], protocol: str | None) -> pd.DataFrame:
    sel = records[(records["dataset"] == dataset) & records["metric"].isin(list(metrics))]
    return sel if protocol is None else sel[sel["protocol"] == protocol]


def _common_name(names: Sequence[str], severity: float) -> str:
    """The ``/``-separated parts all names share, in order (``r=0.3/seed=0``, ``r=0.3/seed=1`` -> ``r=0.3``)."""
    split = [str(n).split("/") for n in names]
    if len({len(parts) for parts in split}) == 1:
        shared = [parts[0] for parts in zip(*split, strict=True) if len(set(parts)) == 1]
        if shared:
            return "/".join(shared)
    return f"severity={severity:g}"


def draw_labels(records: pd.DataFrame) -> pd.Series:
    """Per record, the column its condition is shown under: conditions of one curve at one severity (draws,
    e.g. mask seeds) share the parts of their names they have in common (``r=0.3/seed=0`` -> ``r=0.3``);
    every other condition keeps its name. Index aligned with ``records``."""
    labels = records["condition"].astype(object).copy()
    curved = records["curve"].notna() & records["severity"].notna()
    group = ["dataset", "protocol", "curve", "severity"]
    for key, rows in records[curved].groupby(group, sort=False)["condition"]:
        labels.loc[rows.index] = _common_name(list(rows.unique()), float(key[3]))
    return labels


def collapse_draws(records: pd.DataFrame) -> pd.DataFrame:
    """Average conditions sharing (protocol, curve, severity) per (dataset, method, seed, metric), under the
    column name of :func:`draw_labels`.

    Adds ``draws`` (how many conditions a row stands for: 1 for all others). A NaN draw makes the mean NaN.
    """
    key = ["dataset", "method", "seed", "protocol", "curve", "severity", "metric"]
    curved = records["curve"].notna() & records["severity"].notna()
    if not records[curved].duplicated(key).any():
        return records.assign(draws=1)
    labelled = records[curved].assign(condition=draw_labels(records)[curved])
    grouped = labelled.groupby([*key, "condition"], sort=False)
    out = grouped.agg(value=("value", lambda v: float(np.mean(v.to_numpy(float)))), draws=("value", "size"),
                      **{c: (c, "first") for c in ("protocol_version", "protocol_hash", "n", "cell", "run")
                         if c in records.columns}).reset_index()
    return pd.concat([records[~curved].assign(draws=1), out[list(records.columns) + ["draws"]]], ignore_index=True)


def protocol_parts(records: pd.DataFrame, protocol: str) -> list[str | None]:
    """A protocol's tables: ``None`` for its conditions without a curve (if any), then each curve's name."""
    sel = records[records["protocol"] == protocol]
    curves = sorted(str(c) for c in sel["curve"].dropna().unique())
    return ([None] if sel["curve"].isna().any() else []) + curves


def short_curve(protocol: str, curve: str) -> str:
    """A curve's name without its protocol's prefix (``noise/gaussian/all`` -> ``gaussian/all``); may be ''."""
    return "" if curve == protocol else curve.removeprefix(f"{protocol}/")


def condition_order(sel: pd.DataFrame) -> list[str]:
    """Conditions without a curve in record order, then each curve's conditions by increasing severity."""
    first = sel.drop_duplicates("condition")
    plain = first[first["curve"].isna()]["condition"].tolist()
    curved = first[first["curve"].notna()].sort_values(["curve", "severity", "condition"], kind="stable")
    return plain + curved["condition"].tolist()


def condition_view(records: pd.DataFrame, dataset: str, protocol: str, metrics: Sequence[str],
                   summaries: pd.DataFrame | None = None, curve: str | None = None) -> View:
    """The conditions of ``protocol`` that belong to ``curve`` (None: those without a curve). ``summaries``
    (from :func:`robustness_values`, computed once per dataset) gives the incomplete mean."""
    sel = _select(records, dataset, metrics, protocol)
    sel = sel[sel["curve"] == curve] if curve is not None else sel[sel["curve"].isna()]
    if sel.empty:
        raise ValueError(f"no {protocol} records for dataset {dataset!r} and metric(s) {list(metrics)}")
    order = condition_order(sel)
    values = sel.rename(columns={"condition": "column"})[VALUE_COLUMNS]
    if protocol == FIXED_PATTERN and len(order) > 1:
        if summaries is None:  # the incomplete mean needs the fixed patterns only
            summaries = robustness_values(records[records["protocol"] == FIXED_PATTERN], dataset, metrics, None)
        means = summaries
        means = means[(means["summary"] == "incomplete_mean") & means["metric"].isin(list(metrics))]
        means = means.assign(column=MEAN_INCOMPLETE)
        values = pd.concat([values, means[VALUE_COLUMNS]], ignore_index=True)
        order.append(MEAN_INCOMPLETE)
    columns = tuple(Column(c, tuple(metric_slot(m, c) for m in metrics)) for c in order)
    title = "missing-modality patterns" if protocol == FIXED_PATTERN else f"conditions of {protocol}"
    if curve is not None:
        title = f"{protocol}{': ' + short_curve(protocol, curve) if short_curve(protocol, curve) else ''}, " \
                "by severity"
    legend = [f"{MEAN_INCOMPLETE} = mean over the patterns other than full, per seed"] if MEAN_INCOMPLETE in order \
        else []
    draws = sel["draws"].max() if "draws" in sel.columns else 1
    if draws > 1:
        legend.append(f"each column is the mean over its {int(draws)} draws (e.g. mask seeds), per training seed")
    return View("conditions", dataset, title, tuple(metrics), values, columns, _protocols(sel),
                {c: (protocol, c) for c in order if c != MEAN_INCOMPLETE}, "; ".join(legend), curve)


def metric_view(records: pd.DataFrame, dataset: str, metrics: Sequence[str], condition: str = CLEAN_CONDITION,
                protocol: str = FIXED_PATTERN) -> View:
    sel = _select(records, dataset, metrics, protocol)
    sel = sel[sel["condition"] == condition]
    if sel.empty:
        raise ValueError(f"no records of condition {condition!r} ({protocol}) for dataset {dataset!r}")
    present = [m for m in metrics if m in set(sel["metric"])]
    values = sel.assign(column=sel["metric"])[VALUE_COLUMNS]
    columns = tuple(Column(m, (metric_slot(m, m),), head=metric_label(m)) for m in present)
    return View("metrics", dataset, f"all metrics, condition {condition}", tuple(present), values, columns,
                _protocols(sel), {m: (protocol, condition) for m in present})


def robustness_values(records: pd.DataFrame, dataset: str, metrics: Sequence[str],
                      reference: str | None) -> pd.DataFrame:
    """Per-seed robustness summaries of one dataset, with a ``column`` key (``summary`` or ``summary:curve``)."""
    sel = _select(records, dataset, metrics, None)
    higher = {m: METRICS.get(m).higher_is_better for m in metrics}
    ref = reference if reference in set(sel["method"]) else None
    out = robustness_summary(sel, higher, reference=ref)
    column = np.where(out["curve"].isna(), out["summary"], out["summary"] + ":" + out["curve"].astype(str))
    return out.assign(column=column)


_CURVE_SUMMARIES = {"auc": "AUC", "relative_auc": "AUC/clean", "max_severity_drop": "drop@max",
                    "effective_robustness": "ER"}


def _summary_slot(metric: str, column: str, summary: str) -> Slot:
    if summary in ("incomplete_drop", "max_severity_drop"):
        return metric_slot(metric, column, higher=False)  # signed so that positive = worse
    if summary == "relative_auc":  # a ratio to clean, shown in percent whatever the metric's unit
        return metric_slot(metric, column, scale=100.0, fmt="{:.1f}")
    if summary == "effective_robustness":  # positive = more robust; the reference's own 0 is a definition
        return metric_slot(metric, column, higher=True, relative=True)
    return metric_slot(metric, column)


def _summary_legend(summaries: pd.Series, reference: str | None) -> str:
    notes = []
    if (summaries == "incomplete_drop").any():
        notes.append("drop = clean minus the mean over incomplete patterns, positive = worse")
    if (summaries == "auc").any():
        notes.append("AUC = mean level over the recorded severities (trapezoid rule, clean value at severity 0)")
    if (summaries == "relative_auc").any():
        notes.append("AUC/clean = AUC as % of the clean value (100 = no loss; for lower-is-better metrics above "
                     "100 is worse)")
    if (summaries == "max_severity_drop").any():
        notes.append("drop@max = loss from clean to the largest severity, positive = worse")
    if (summaries == "effective_robustness").any():
        notes.append(f"ER = effective robustness against {reference} (excess over its curve shifted to the "
                     f"method's clean value), positive = more robust; {reference}'s own ER is 0 by definition "
                     "(shown as –, not ranked)")
    return "; ".join(notes)


def summary_view(records: pd.DataFrame, dataset: str, metrics: Sequence[str], reference: str | None,
                 summaries: pd.DataFrame | None = None, protocol: str | None = None) -> View:
    """Pattern summaries (``protocol=None``: clean, mean and worst incomplete pattern, drop) or, for every
    curve of ``protocol``, its AUC, relative AUC, drop at the largest severity and effective robustness."""
    summ = summaries if summaries is not None else robustness_values(records, dataset, metrics, reference)
    summ = summ[summ["metric"].isin(list(metrics))]
    if protocol is None:
        summ = summ[summ["summary"].isin(list(_SUMMARIES))]  # not incomplete_ratio: it repeats the drop
    else:
        curves = set(records.loc[(records["dataset"] == dataset) & (records["protocol"] == protocol), "curve"])
        summ = summ[summ["summary"].isin(list(_CURVE_SUMMARIES)) & summ["curve"].isin(curves)]
    if summ.empty:
        raise ValueError(f"no robustness summaries for dataset {dataset!r} ({protocol or 'patterns'})")
    rank = {s: i for i, s in enumerate([*_SUMMARIES, *_CURVE_SUMMARIES])}
    keys = summ.drop_duplicates("column")[["column", "summary", "curve"]]
    keys = keys.assign(order=keys["summary"].map(rank)).sort_values(["curve", "order"], na_position="first")
    columns = []
    for column, summary, curve in keys[["column", "summary", "curve"]].itertuples(index=False):
        name = short_curve(str(protocol), str(curve)) if protocol else ""
        label = _SUMMARIES.get(summary) or f"{_CURVE_SUMMARIES[summary]} {name}".strip()
        head = _SUMMARIES.get(summary) or _CURVE_SUMMARIES[summary]
        columns.append(Column(label, tuple(_summary_slot(m, column, summary) for m in metrics), group=name,
                              head=head))
    sel = _select(records, dataset, metrics, None)
    sel = sel[sel["protocol"].isin([FIXED_PATTERN, protocol])]
    title = f"robustness of {protocol}" if protocol else "robustness to missing-modality patterns"
    return View("robustness", dataset, title, tuple(metrics), summ[VALUE_COLUMNS], tuple(columns), _protocols(sel),
                {}, _summary_legend(keys["summary"], reference))


def with_reported(view: View, methods: Sequence[str]) -> tuple[View, dict[CellKey, float]]:
    """Add a ``(paper)`` column after every column some method card reports a value for (same dataset,
    metric, protocol and condition); return the view and the reported values by cell key."""
    values: dict[CellKey, float] = {}
    for method in methods:
        card = getattr(METHODS.get(method), "card", None) if method in METHODS else None
        for rep in getattr(card, "reported", ()):
            for column, (protocol, condition) in view.condition_of.items():
                if (rep.dataset, rep.protocol, rep.condition) == (view.dataset, protocol, condition) and \
                        rep.metric in view.metrics and (view.kind != "metrics" or rep.metric == column):
                    values[(method, column, rep.metric)] = float(rep.value)
    columns: list[Column] = []
    for col in view.columns:
        columns.append(col)
        if any((m, s.column, s.metric) in values for m in methods for s in col.slots):
            columns.append(Column(f"{col.label} (paper)", col.slots, reported=True, group=col.group,
                                  head=f"{col.head or col.label} (paper)"))
    return replace(view, columns=tuple(columns)), values


def pattern_drops(records: pd.DataFrame, dataset: str, metric: str) -> pd.DataFrame:
    """Per seed, the drop from ``full`` to each incomplete fixed pattern, signed so that positive = worse.

    Columns ``method, seed, column (pattern), metric, value``, in the metric's own units.
    """
    sel = _select(records, dataset, [metric], FIXED_PATTERN)
    wide = sel.pivot_table(index=["method", "seed"], columns="condition", values="value", aggfunc="first",
                           dropna=False)  # a pattern without any value (no sample scored) stays, as NaN
    if CLEAN_CONDITION not in wide.columns:
        raise ValueError(f"no {CLEAN_CONDITION!r} condition for dataset {dataset!r}")
    sign = 1.0 if METRICS.get(metric).higher_is_better else -1.0
    patterns = [c for c in condition_order(sel) if c != CLEAN_CONDITION]
    drops = wide[patterns].rsub(wide[CLEAN_CONDITION], axis=0) * sign
    long = drops.reset_index().melt(id_vars=["method", "seed"], var_name="column", value_name="value")
    return long.assign(metric=metric)[VALUE_COLUMNS]


def curve_values(records: pd.DataFrame, dataset: str, metric: str) -> pd.DataFrame:
    """Per seed, every point of every severity curve (``method, seed, protocol, curve, severity, value``;
    pass records through :func:`collapse_draws` first so that each severity has one point), with the
    clean value (condition ``full`` of fixed_pattern) added at severity 0 where a curve has no such point,
    as :func:`harness.robustness.robustness_summary` does for the AUC."""
    sel = _select(records, dataset, [metric], None)
    points = sel[sel["curve"].notna()][["method", "seed", "protocol", "curve", "severity", "value"]]
    clean = sel[(sel["protocol"] == FIXED_PATTERN) & (sel["condition"] == CLEAN_CONDITION)]
    extra = []
    for curve, group in points.groupby("curve"):
        if not (group["severity"] == 0.0).any() and not clean.empty:
            own = clean[clean["method"].isin(set(group["method"]))]
            protocol = group["protocol"].iloc[0]
            extra.append(own[["method", "seed", "value"]].assign(protocol=protocol, curve=curve, severity=0.0))
    return pd.concat([points, *extra], ignore_index=True) if extra else points.reset_index(drop=True)
