"""The numeric table model: per (method, column, metric) mean, std, n, interval, p-values, marks and ranks.

Pure functions of per-seed values (built by :mod:`reports.views` from stored records); numbers stay numbers
here, :mod:`reports.render` turns them into Markdown, LaTeX or CSV.

Conventions
-----------
* Cells are ``mean ± sample std (ddof=1)`` over seeds (:func:`harness.stats.aggregate`); ``n`` counts the
  finite per-seed values, and std and the interval are NaN with n < 2.
* Best (rank 1, bold) and second best (rank 2, underlined) are decided per (column, metric) from the metric's
  direction, on the unrounded means, except that means equal at the displayed precision are ties and share
  the mark: a reader never sees two equal numbers marked differently, nor a bold number below an unbolded
  one. Ranks are dense (after a tie for best, the next distinct value is second). Nothing is marked when
  fewer than two distinct values exist, and the second is not marked when it is also the worst.
* Significance: :func:`harness.comparisons.compare_to_reference` of each method against the reference,
  paired on seed, two-sided; the correction family is every comparison of the table sharing a metric.
  ``‡`` marks p_adjusted < 0.01, ``†`` p_adjusted < alpha (0.05); ``n/c`` marks a comparison with fewer
  than two paired seeds (not computable). Marks flag a difference in either direction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from harness.comparisons import Correction, compare_to_reference
from harness.stats import aggregate, benjamini_hochberg, holm, min_attainable_p, power_warning

CellKey = tuple[str, str, str]  # (method, column, metric)
_TEST_NAMES = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test",
               "randomization": "seed-stratified approximate randomization test"}
_CORRECT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "holm": holm, "bh": benjamini_hochberg, "none": lambda p: np.asarray(p, dtype=float)}
_CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no"}
NOT_COMPUTABLE = "n/c"


@dataclass(frozen=True)
class Slot:
    """One number per method in a column: which metric, which way is better, how it is displayed."""

    column: str
    metric: str
    higher_is_better: bool
    scale: float = 100.0
    fmt: str = "{:.1f}"

    def display(self, value: float) -> str:
        if not np.isfinite(value):
            return "–"
        text = self.fmt.format(value * self.scale)
        return text[1:] if text.startswith("-") and float(text) == 0.0 else text  # no "-0.0" from float noise

    def rounded(self, value: float) -> float:
        """The value as displayed, back as a number (ties are decided on it)."""
        try:
            return float(self.display(value))
        except ValueError:
            return float(value)


@dataclass(frozen=True)
class Column:
    """A table column: its header and one slot per metric (several = a composite ``a / b / c`` cell).

    ``reported`` columns show the papers' numbers (method cards) for the same slots, not our results.
    """

    label: str
    slots: tuple[Slot, ...]
    reported: bool = False


@dataclass(frozen=True)
class StatsOptions:
    """``test``: ``ttest`` or ``wilcoxon`` over seeds, or ``randomization`` over test samples (needs the
    stored predictions, see :mod:`reports.persample`; derived columns are then left untested)."""

    reference: str | None = "vanilla_fusion"
    test: Literal["ttest", "wilcoxon", "randomization"] = "ttest"
    correction: Correction = "holm"
    alpha: float = 0.05
    strong: float = 0.01
    confidence: float = 0.95
    n_permutations: int = 1000

    def __post_init__(self) -> None:
        if self.test not in _TEST_NAMES:
            raise ValueError(f"unknown test {self.test!r}; valid: {', '.join(_TEST_NAMES)}")
        if self.correction not in _CORRECTION_NAMES:
            raise ValueError(f"unknown correction {self.correction!r}; valid: {', '.join(_CORRECTION_NAMES)}")
        if not 0.0 < self.strong <= self.alpha < 1.0:
            raise ValueError(f"need 0 < strong <= alpha < 1, got strong={self.strong}, alpha={self.alpha}")


@dataclass
class Table:
    """A rendered-to-be table. ``cells`` is indexed by (method, column, metric) with columns ``mean, std, n,
    ci_low, ci_high, ci_method, p_value, p_adjusted, mark, rank``; ``reported`` maps a cell key to a paper's
    value. ``caption`` follows the dataset name (renderers put the name first, in bold)."""

    key: str
    dataset: str
    title: str
    methods: list[str]
    columns: list[Column]
    cells: pd.DataFrame
    caption: str = ""
    legend: str = ""
    reported: dict[CellKey, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def cell(self, method: str, slot: Slot) -> pd.Series | None:
        key = (method, slot.column, slot.metric)
        return self.cells.loc[key] if key in self.cells.index else None


def best_second(means: Mapping[str, float], slot: Slot) -> dict[str, int]:
    """Rank 1 (best), 2 (second) or 0 per method, by the rule in the module docstring."""
    keys = {m: slot.rounded(v) for m, v in means.items() if np.isfinite(v)}
    distinct = sorted(set(keys.values()), reverse=slot.higher_is_better)
    ranks = dict.fromkeys(means, 0)
    if len(distinct) < 2:
        return ranks
    for method, key in keys.items():
        if key == distinct[0]:
            ranks[method] = 1
        elif key == distinct[1] and len(distinct) > 2:
            ranks[method] = 2
    return ranks


def mark(p_adjusted: float, note: str, options: StatsOptions) -> str:
    if np.isfinite(p_adjusted):
        return "‡" if p_adjusted < options.strong else "†" if p_adjusted < options.alpha else ""
    return NOT_COMPUTABLE if "not computable" in note else ""


def _significance(values: pd.DataFrame, dataset: str, methods: Sequence[str], slots: Sequence[Slot],
                  options: StatsOptions, pvalues: pd.DataFrame | None) -> pd.DataFrame:
    """p-values against the reference, corrected per metric over the table; empty without a reference or a
    second method. Seed-level tests run here; per-sample p-values come in as ``pvalues``."""
    ref = options.reference
    cols = ["method", "column", "metric", "p_value", "p_adjusted", "note", "n_pairs"]
    if ref is None or ref not in methods or len(methods) < 2:
        return pd.DataFrame(columns=cols)
    if options.test == "randomization":
        if pvalues is None or pvalues.empty:
            return pd.DataFrame(columns=cols)
        out = pvalues.reset_index(drop=True)
        adjusted = np.full(len(out), np.nan)
        p = out["p_value"].to_numpy(dtype=float)
        for positions in out.groupby("metric").indices.values():
            adjusted[positions] = _CORRECT[options.correction](p[positions])
        return out.assign(p_adjusted=adjusted)[cols]
    higher = {s.metric: s.higher_is_better for s in slots}  # only used for the 'direction' column
    cmp = compare_to_reference(values.assign(dataset=dataset), ref, higher_is_better=higher, test=options.test,
                               correction=options.correction, alpha=options.alpha,
                               cell=("dataset", "column", "metric"))
    return cmp.rename(columns={"n": "n_pairs"})[cols]


def build_table(key: str, dataset: str, title: str, values: pd.DataFrame, columns: Sequence[Column],
                options: StatsOptions, *, intervals: pd.DataFrame | None = None,
                reported: Mapping[CellKey, float] | None = None, legend: str = "",
                pvalues: pd.DataFrame | None = None) -> Table:
    """Aggregate ``values`` (per-seed rows: method, seed, column, metric, value), test, rank.

    ``intervals`` (method, column, metric, ci_low, ci_high) replaces the t-interval where given
    (``ci_method`` says which); ``pvalues`` (method, column, metric, p_value, n_pairs, note) are per-sample
    p-values for ``test="randomization"``. The caption is left to :func:`describe`.
    """
    seen = list(dict.fromkeys(values["method"]))
    ref = options.reference
    methods = ([ref] if ref in seen else []) + [m for m in seen if m != ref]
    agg = aggregate(values, by=("method", "column", "metric"), confidence=options.confidence)
    agg["ci_method"] = "t"
    if intervals is not None and not intervals.empty:
        agg = agg.merge(intervals, on=["method", "column", "metric"], how="left", suffixes=("", "_boot"))
        has = agg["ci_low_boot"].notna()
        agg.loc[has, ["ci_low", "ci_high"]] = agg.loc[has, ["ci_low_boot", "ci_high_boot"]].to_numpy()
        agg.loc[has, "ci_method"] = "bootstrap"
        agg = agg.drop(columns=["ci_low_boot", "ci_high_boot"])
    slots = [s for c in columns if not c.reported for s in c.slots]
    sig = _significance(values, dataset, methods, slots, options, pvalues)
    cells = agg.merge(sig, on=["method", "column", "metric"], how="left")
    cells["note"] = cells["note"].fillna("")
    cells["mark"] = [mark(p, n, options) for p, n in zip(cells["p_adjusted"].astype(float), cells["note"],
                                                          strict=True)]
    cells = cells.set_index(["method", "column", "metric"]).sort_index()
    cells["rank"] = 0
    for slot in slots:
        rows = cells.xs((slot.column, slot.metric), level=("column", "metric"), drop_level=False)
        ranks = best_second(dict(zip(rows.index.get_level_values("method"), rows["mean"], strict=True)), slot)
        for method, rank in ranks.items():
            cells.loc[(method, slot.column, slot.metric), "rank"] = rank
    return Table(key, dataset, title, methods, list(columns), cells, legend=legend, reported=dict(reported or {}))


def _seed_text(n: np.ndarray) -> str:
    n = n[n > 0]
    if n.size == 0:
        return "n = 0 seeds"
    lo, hi = int(n.min()), int(n.max())
    return f"n = {lo} seed{'s' * (lo != 1)}" if lo == hi else f"n = {lo}–{hi} seeds (varies by cell)"


def _metric_text(columns: Sequence[Column]) -> str:
    """Metrics with unit and direction: ``acc2_non0 (%), higher is better`` for one metric; several are
    grouped, e.g. ``acc2_non0, acc7 (%, higher is better); mae (lower is better)``; composite cells list
    their metrics in cell order (``each cell a / b ...``)."""
    first: dict[str, Slot] = {}
    for slot in (s for c in columns if not c.reported for s in c.slots):
        first.setdefault(slot.metric, slot)  # a metric's own direction (summary columns may flip it)
    slots = list(first.values())

    def better(s: Slot) -> str:
        return f"{'higher' if s.higher_is_better else 'lower'} is better"

    if len(slots) == 1:
        return f"{slots[0].metric}{' (%)' if slots[0].scale == 100.0 else ''}, {better(slots[0])}"
    composite = any(len(c.slots) > 1 for c in columns)
    groups: list[tuple[str, list[str]]] = []
    for s in slots:
        descr = f"({'%, ' if s.scale == 100.0 else ''}{better(s)})"
        if groups and groups[-1][0] == descr:
            groups[-1][1].append(s.metric)
        else:
            groups.append((descr, [s.metric]))
    inner, outer = (" / ", " / ") if composite else (", ", "; ")
    text = outer.join(f"{inner.join(names)} {descr}" for descr, names in groups)
    return f"each cell {text}" if composite else text


def _test_text(table: Table, options: StatsOptions) -> list[str]:
    cells = table.cells
    tested = cells[cells["p_value"].notna()] if "p_value" in cells else cells.iloc[0:0]
    if options.reference is None:
        return ["No significance marks: no reference method was chosen."]
    if options.reference not in table.methods:
        return [f"No significance marks: the reference {options.reference} has no results here."]
    if len(table.methods) < 2:
        return [f"No significance marks: {options.reference} is the only method."]
    sizes = tested.groupby(level="metric").size()
    fam = f"m = {int(sizes.min())}" if sizes.nunique() <= 1 and len(sizes) else \
        f"m = {int(sizes.min())}–{int(sizes.max())}" if len(sizes) else "m = 0"
    correction = _CORRECTION_NAMES[options.correction]
    how = (f"over test samples ({options.n_permutations} permutations, predictions swapped within each seed) "
           "against {ref} on their common seeds" if options.test == "randomization"
           else "over seeds against {ref}, paired on seed").format(ref=options.reference)
    out = [f"† p < {options.alpha:g}, ‡ p < {options.strong:g} after {correction} correction: two-sided "
           f"{_TEST_NAMES[options.test]} {how}; family: the comparisons of this table sharing a metric ({fam}). "
           "Marks flag a difference in either direction."]
    untested = cells.index.get_level_values("method") != options.reference
    if options.test == "randomization" and cells.loc[untested, "p_value"].isna().any():
        out.append("Derived columns and averages over draws are not tested (the per-sample test needs one "
                   "condition's predictions).")
    if (cells["mark"] == NOT_COMPUTABLE).any():
        out.append("n/c: significance not computable (fewer than 2 paired seeds).")
    n_pairs = cells["n_pairs"].dropna().astype(int) if "n_pairs" in cells else pd.Series(dtype=int)
    if len(n_pairs) and n_pairs.min() >= 2 and options.test != "randomization":
        n = int(n_pairs.min())
        warning = power_warning(options.test, n, options.alpha)
        if warning:
            out.append(f"Warning: {warning}.")
        elif options.correction == "holm" and len(sizes) and \
                int(sizes.max()) * min_attainable_p(options.test, n) >= options.alpha:
            floor = min(1.0, int(sizes.max()) * min_attainable_p(options.test, n))
            out.append(f"Warning: after Holm over {int(sizes.max())} comparisons the smallest attainable adjusted "
                       f"p with n={n} is {floor:.3g}; nothing can reach p<{options.alpha:g}; use more seeds.")
    return out


def describe(table: Table, options: StatsOptions, protocols: Sequence[tuple[str, int, str]],
             partial_reasons: Sequence[str] = ()) -> str:
    """The caption (after the dataset name): metric and direction, protocol, n, test, correction, caveats."""
    proto = ", ".join(f"{name} v{version} (hash {digest})" for name, version, digest in protocols)
    ci = set(table.cells["ci_method"]) if len(table.cells) else {"t"}
    title = f"{table.title} ({table.legend})" if table.legend else table.title
    parts = [f"{_metric_text(table.columns)}; {title}; protocol {proto}.",
             f"Mean ± sample std (ddof=1) over {_seed_text(table.cells['n'].to_numpy())}; checkpoints selected on "
             "the validation split, scores on the test split.",
             "Bold: best, underlined: second best per column (by the metric's direction; means equal at the "
             "displayed precision tie)."]
    if "bootstrap" in ci:
        parts.append("Intervals in the CSV: percentile bootstrap over test samples of the seed mean.")
    parts += _test_text(table, options)
    if any(c.reported for c in table.columns):
        parts.append("Columns marked (paper) give the value reported in the method's paper, not reproduced.")
    if partial_reasons:
        partial_reasons = sorted(partial_reasons, key=lambda r: table.dataset not in r)  # this dataset's first
        more = f" and {len(partial_reasons) - 1} more reason(s), see report.md" if len(partial_reasons) > 1 else ""
        parts.append(f"PARTIAL RUN, not reportable: {partial_reasons[0]}{more}.")
    return " ".join(parts)

