"""Figures drawn from aggregated results (never from a model): robustness curves, a method x pattern heatmap
and a per-method drop chart, each saved as PNG and PDF. Bands and error bars are 95% t-intervals over seeds
(:func:`harness.stats.aggregate`), curve bands clipped to the metric's range; curves use the recorded
severity values as x.

Drawing uses ``matplotlib.figure.Figure`` directly (no pyplot, no GUI backend, no global state) and
seaborn styles inside an ``rc_context``, so importing or calling this module changes nothing for the caller.
Inputs are tidy frames with ``mean``, ``ci_low``, ``ci_high`` in the metric's stored units (fractions);
``scale`` converts to display units (percent for accuracies), as in the tables.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from harness.robustness import CLEAN_CONDITION, FIXED_PATTERN
from harness.stats import aggregate
from reports.names import condition_label, method_labels, metric_label, protocol_label, severity_label
from reports.tables import Slot
from reports.views import MEAN_INCOMPLETE, condition_view, curve_values, metric_slot, pattern_drops, short_curve

FORMATS: tuple[str, ...] = ("png", "pdf")
log = logging.getLogger(__name__)
# Values a metric can take, in stored units. MetricSpec declares no range, so it is kept here: a t-band with
# n = 2 is mean ± 12.7 std/sqrt(2) and would draw an accuracy band up to ~150 %. Metrics displayed in percent
# (scale 100) are proportions in [0, 1] (acc*, f1*, wa, ua); the others need an entry, else they are unbounded.
VALID_RANGE: dict[str, tuple[float, float]] = {"corr": (-1.0, 1.0), "mae": (0.0, np.inf)}


@contextmanager
def _style() -> Iterator[None]:
    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.1)}
    with matplotlib.rc_context(rc):
        yield


# Okabe & Ito's colour-blind-safe set, ordered so that the first colours are the most distinct from each other
# (seaborn's "colorblind" puts orange and vermilion 2nd and 4th). Past eight methods colours repeat, and the
# marker and line style (which never repeat together) keep every method apart, in grey print too.
COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")
HATCHES = ("", "//", "..", "xx", "\\\\", "oo", "++", "--")


@dataclass(frozen=True)
class Look:
    """How one method is drawn: its label, colour, marker, line style and bar hatch."""

    label: str
    color: str
    marker: str
    linestyle: str
    hatch: str


def looks(methods: Sequence[str]) -> dict[str, Look]:
    """A distinct look per method, in the given order: colour i mod 8, marker i mod 10, line style by the colour
    cycle (so no two of 40 methods share colour, marker and style)."""
    labels = method_labels(methods)
    return {m: Look(labels[m], COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)],
                    LINESTYLES[(i // len(COLORS)) % len(LINESTYLES)], HATCHES[i % len(HATCHES)])
            for i, m in enumerate(methods)}


def _unit(slot: Slot) -> str:
    name = metric_label(slot.metric)
    return f"{name} (%)" if slot.scale == 100.0 else name


def valid_range(slot: Slot) -> tuple[float, float]:
    """(low, high) a slot's metric can take, in stored units (see :data:`VALID_RANGE`)."""
    if slot.metric in VALID_RANGE:
        return VALID_RANGE[slot.metric]
    return (0.0, 1.0) if slot.scale == 100.0 else (-np.inf, np.inf)


def band_limits(points: pd.DataFrame, slot: Slot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Band of a curve in display units: (mask of points with a finite interval, low, high), ``ci_low`` and
    ``ci_high`` clipped to the metric's range (a band never claims a value the metric cannot take)."""
    low, high = valid_range(slot)
    lo, hi = points["ci_low"].to_numpy(float), points["ci_high"].to_numpy(float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    return ok, np.clip(lo, low, high) * slot.scale, np.clip(hi, low, high) * slot.scale


def curve_figure(curves: Mapping[str, pd.DataFrame], slot: Slot, title: str,
                 xlabels: Mapping[str, str] | None = None) -> Figure:
    """Metric vs severity, one panel per curve (shared y axis), one line per method, a band for each
    point's interval over seeds, clipped to the metric's range (:func:`band_limits`).

    ``curves``: panel title -> one row per (method, severity) with ``mean, ci_low, ci_high``; the x axis
    uses the real severity values (uneven spacing shows as such) and is titled ``xlabels[panel]`` (the
    protocol's unit for that curve; default ``severity``).
    """
    methods = list(dict.fromkeys(m for g in curves.values() for m in g["method"]))
    look = looks(methods)
    ncols = min(4, len(curves))
    nrows = -(-len(curves) // ncols)
    with _style():
        fig = Figure(figsize=(1.0 + 3.2 * ncols, 0.9 + 2.6 * nrows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
        for ax, (name, points) in zip(axes, curves.items(), strict=False):
            for method in dict.fromkeys(points["method"]):
                g = points[points["method"] == method].sort_values("severity")
                x = g["severity"].to_numpy(float)
                lk = look[method]
                ax.plot(x, g["mean"] * slot.scale, marker=lk.marker, markersize=4, color=lk.color,
                        linestyle=lk.linestyle, label=lk.label)
                ok, lo, hi = band_limits(g, slot)
                if ok.any():
                    ax.fill_between(x[ok], lo[ok], hi[ok], color=lk.color, alpha=0.15, linewidth=0)
            ax.set_title(name, fontsize="small")
            ax.set_xlabel((xlabels or {}).get(name, "severity"))
        for ax in axes[len(curves):]:
            ax.set_visible(False)
        for ax in axes[::ncols]:
            ax.set_ylabel(_unit(slot) + (" ↑" if slot.higher_is_better else " ↓"))
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(methods)), frameon=False,
                   fontsize="small")
        fig.suptitle(title, fontsize="medium")
    return fig


def heatmap_figure(means: pd.DataFrame, slot: Slot, title: str) -> Figure:
    """``means``: index = methods, columns = patterns, values = mean over seeds (stored units).

    The colour map is reversed for lower-is-better metrics, so that the same colour means "better" in
    every heatmap; each cell is annotated with the value as the tables display it.
    """
    means = means.rename(index=method_labels(list(means.index)),
                         columns={c: condition_label(FIXED_PATTERN, c) for c in means.columns})
    shown = means.astype(float) * slot.scale
    annot = means.apply(lambda col: col.map(slot.display))
    width = max(4.5, 1.0 + 0.9 * shown.shape[1])
    height = max(2.2, 1.2 + 0.45 * shown.shape[0])
    with _style():
        fig = Figure(figsize=(width, height), layout="constrained")
        ax = fig.subplots()
        sns.heatmap(shown, annot=annot.to_numpy(), fmt="", cmap="viridis" if slot.higher_is_better else "viridis_r",
                    ax=ax, linewidths=0.5, cbar_kws={"label": _unit(slot)})
        ax.set_xlabel("available modalities")
        ax.set_ylabel("")
        ax.set_title(title, fontsize="medium")
        ax.tick_params(axis="x", labelrotation=30)
        ax.tick_params(axis="y", labelrotation=0)
    return fig


def drop_figure(drops: pd.DataFrame, slot: Slot, title: str) -> Figure:
    """Grouped bars: for every incomplete pattern (x) and method (colour), the drop from ``full``
    (positive = worse), with error bars from ``ci_low``/``ci_high`` where n >= 2."""
    methods = list(dict.fromkeys(drops["method"]))
    patterns = list(dict.fromkeys(drops["column"]))
    look = looks(methods)
    width = 0.8 / max(1, len(methods))
    with _style():
        size = (max(4.5, 1.0 + len(patterns) * (0.4 + 0.25 * len(methods))), 3.4)
        fig = Figure(figsize=size, layout="constrained")
        ax = fig.subplots()
        for i, method in enumerate(methods):
            g = drops[drops["method"] == method].set_index("column").reindex(patterns)
            mean = g["mean"].to_numpy(float) * slot.scale
            err = np.vstack([mean - g["ci_low"].to_numpy(float) * slot.scale,
                             g["ci_high"].to_numpy(float) * slot.scale - mean])
            err = np.where(np.isfinite(err), err, 0.0)
            x = np.arange(len(patterns)) + (i - (len(methods) - 1) / 2) * width
            lk = look[method]
            ax.bar(x, mean, width, yerr=err, capsize=2, color=lk.color, hatch=lk.hatch, edgecolor="white",
                   linewidth=0.5, label=lk.label)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(patterns)), [condition_label(FIXED_PATTERN, p) for p in patterns], rotation=30,
                      ha="right")
        ax.set_xlabel("available modalities")
        ax.set_ylabel(f"drop from complete, {_unit(slot)}\n(positive = worse)")
        ax.set_title(title, fontsize="medium")
        ax.legend(frameon=False, fontsize="small")
    return fig


def save(fig: Figure, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.pdf``; the PDF carries no creation date (reproducible bytes)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class FigureFile:
    """A saved figure: what it shows (for the index) and its files (PNG first)."""

    dataset: str
    kind: str
    metric: str
    caption: str
    paths: tuple[Path, ...]


def _stem(out: Path, *parts: str) -> Path:
    return out / "__".join(re.sub(r"[^A-Za-z0-9_.+=-]", "_", p) for p in parts)


def _flat(title: str) -> str:
    return title.replace("\n", ", ")


def _seeds(n: pd.Series) -> str:
    lo, hi = int(n.min()), int(n.max())
    return f"n={lo}" if lo == hi else f"n={lo}–{hi}"


def _in_order(frame: pd.DataFrame, methods: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by the given method and column orders (aggregation sorts them by name)."""
    key = frame["method"].map({m: i for i, m in enumerate(methods)}) * len(columns) + \
        frame["column"].map({c: i for i, c in enumerate(columns)})
    return frame.assign(_key=key).sort_values("_key").drop(columns="_key")


def _pattern_figures(records: pd.DataFrame, dataset: str, metric: str, out: Path) -> list[FigureFile]:
    slot = metric_slot(metric, metric)
    view = condition_view(records, dataset, FIXED_PATTERN, [metric])
    agg = aggregate(view.values[view.values["column"] != MEAN_INCOMPLETE], by=("method", "column"))
    order = [c.label for c in view.columns if c.label != MEAN_INCOMPLETE]
    methods = list(dict.fromkeys(view.values["method"]))
    means = agg.pivot(index="method", columns="column", values="mean").reindex(index=methods, columns=order)
    files = []
    title = f"{dataset}: {metric_label(metric)}\nmean over {_seeds(agg['n'])} seeds"
    stem = _stem(out, dataset, "heatmap", metric)
    files.append(FigureFile(dataset, "heatmap", metric, f"{_flat(title)}, per method and available modalities.",
                            tuple(save(heatmap_figure(means, slot, title), stem))))
    raw = pattern_drops(records, dataset, metric)
    drops = _in_order(aggregate(raw, by=("method", "column")), methods, list(dict.fromkeys(raw["column"])))
    title = f"{dataset}: drop in {metric_label(metric)} from complete inputs\nmean and 95% t-interval over " \
            f"{_seeds(drops['n'])} seeds"
    stem = _stem(out, dataset, "drop", metric)
    files.append(FigureFile(dataset, "drop", metric, f"{_flat(title)}; positive = worse.",
                            tuple(save(drop_figure(drops, slot, title), stem))))
    return files


def _curve_figures(records: pd.DataFrame, dataset: str, metric: str, out: Path) -> list[FigureFile]:
    """One figure per protocol with severity curves, a panel per curve (records with collapsed draws)."""
    slot = metric_slot(metric, metric)
    points = curve_values(records, dataset, metric)
    files = []
    for protocol, group in points.groupby("protocol", sort=True):
        panels: dict[str, pd.DataFrame] = {}
        xlabels: dict[str, str] = {}
        for curve, one in group.groupby("curve", sort=True):
            if one["severity"].isna().any() or one.duplicated(["method", "seed", "severity"]).any():
                log.warning("%s: curve %r needs one finite severity per condition; not drawn", dataset, curve)
                continue
            short = short_curve(str(protocol), str(curve))
            panel = condition_label(str(protocol), short) if short else ""  # a curve named like its protocol
            panels[panel] = aggregate(one, by=("method", "severity"))
            xlabels[panel] = severity_label(str(protocol), str(curve))
        if not panels:
            continue
        n = pd.concat(list(panels.values()))["n"]
        title = f"{dataset}: {metric_label(metric)} under {protocol_label(str(protocol))}\nmean and 95% t-band over " \
                f"{_seeds(n)} seeds"
        clipped = ", bands clipped to the metric's range" if np.isfinite(valid_range(slot)).any() else ""
        caption = f"{_flat(title)}; x = the recorded severity values in each curve's unit (axis titles), severity 0 " \
                  f"= complete inputs (condition full){clipped}."
        stem = _stem(out, dataset, f"curves_{protocol}", metric)
        files.append(FigureFile(dataset, f"curves {protocol}", metric, caption,
                                tuple(save(curve_figure(panels, slot, title, xlabels), stem))))
    return files


def make_figures(records: pd.DataFrame, metrics: Mapping[str, Sequence[str]], out: Path) -> list[FigureFile]:
    """Heatmap and drop chart (fixed_pattern) and one curve figure per severity curve, per dataset x metric,
    under ``out``; figures whose data is absent (no value of the metric at all, no such protocol) are skipped."""
    files: list[FigureFile] = []
    for dataset, names in metrics.items():
        rec = records[records["dataset"] == dataset]
        has_patterns = ((rec["protocol"] == FIXED_PATTERN) & (rec["condition"] == CLEAN_CONDITION)).any()
        for metric in names:
            if not rec.loc[rec["metric"] == metric, "value"].notna().any():  # e.g. UA on a single-class test split:
                continue                                                       # report.md says so
            if has_patterns:
                files += _pattern_figures(rec, dataset, metric, out)
            files += _curve_figures(rec, dataset, metric, out)
    return files
