"""The numeric table model: per (method, column, metric) mean, std, n, interval, p-values, marks and ranks.

Pure functions of per-seed values (built by :mod:`reports.views` from stored records); numbers stay numbers
here, :mod:`reports.render` turns them into Markdown, LaTeX or CSV.

Conventions
-----------
* Cells are ``mean ± sample std (ddof=1)`` over seeds (:func:`harness.stats.aggregate`); ``n`` counts the
  finite per-seed values, and std and the interval are NaN with n < 2.
* Best (rank 1, bold) and second best (rank 2, underlined) are decided per (column, metric) from the metric's
  direction, on the means as displayed (rounded to the column's precision; rounding keeps the order, so
  only means that look equal are ties and share the mark): a reader never sees two equal numbers marked
  differently, nor a bold number below an unbolded one. Ranks are dense (after a tie for best, the next
  distinct value is second). Nothing is marked when fewer than two distinct values exist, and the second is
  not marked when it is also the worst.
* A slot measured relative to the reference (``Slot.relative_to_reference``, e.g. effective robustness) has
  no value of its own for the reference (0 by definition): that cell's mean, std and interval are blank
  (shown as '–') and it is not ranked; the other methods are still tested against the reference's zeros.
* Significance: :func:`harness.comparisons.compare_to_reference` of each method against the reference,
  paired on seed, two-sided; the correction family is every comparison of the table sharing a metric.
  ``‡`` marks p_adjusted < 0.01, ``†`` p_adjusted < alpha (0.05); ``n/c`` marks a comparison that is not
  computable (fewer than two paired seeds, or a t-test on differences with zero variance). Marks flag a
  difference in either direction. Per-sample tests (``randomization``, ``bootstrap``) come in as p-values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from harness.comparisons import Correction, compare_to_reference
from harness.power import Comparison, FamilyPower, comparison_level, detectable, family_power, needed
from harness.stats import ZERO_VARIANCE, aggregate, benjamini_hochberg, holm

CellKey = tuple[str, str, str]  # (method, column, metric)
TEST_NAMES = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test",
              "randomization": "seed-stratified approximate randomization test",
              "bootstrap": "seed-pooled paired bootstrap test"}
PER_SAMPLE_TESTS = ("randomization", "bootstrap")  # over test samples, from the stored predictions
_CORRECT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "holm": holm, "bh": benjamini_hochberg, "none": lambda p: np.asarray(p, dtype=float)}
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no"}
NOT_COMPUTABLE = "n/c"


@dataclass(frozen=True)
class Slot:
    """One number per method in a column: which metric, which way is better, how it is displayed.

    ``relative_to_reference``: the values are measured against the reference method (effective robustness),
    whose own value is 0 by definition; its cell is left blank and unranked (see the module docstring).
    """

    column: str
    metric: str
    higher_is_better: bool
    scale: float = 100.0
    fmt: str = "{:.1f}"
    relative_to_reference: bool = False

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
    ``group`` and ``head`` are for paper tables (LaTeX): columns sharing a ``group`` get one spanning header
    above their ``head`` (default: the label), e.g. group ``gaussian/all`` over ``AUC``, ``ER``.
    """

    label: str
    slots: tuple[Slot, ...]
    reported: bool = False
    group: str = ""
    head: str = ""


@dataclass(frozen=True)
class StatsOptions:
    """``reference``: the method every other is tested against (None: no marks; ``mibench report`` takes the one
    the run declares, see :func:`reports.report.resolve_reference`). ``test``: ``ttest`` or ``wilcoxon`` over
    seeds, or ``randomization`` / ``bootstrap`` over test samples (need the stored predictions, see
    :mod:`reports.persample`; derived columns are then left untested).
    ``n_permutations`` is the number of permutations (randomization) or resamples (bootstrap) of a
    per-sample test."""

    reference: str | None = None
    test: Literal["ttest", "wilcoxon", "randomization", "bootstrap"] = "ttest"
    correction: Correction = "holm"
    alpha: float = 0.05
    strong: float = 0.01
    confidence: float = 0.95
    n_permutations: int = 1000

    def __post_init__(self) -> None:
        if self.test not in TEST_NAMES:
            raise ValueError(f"unknown test {self.test!r}; valid: {', '.join(TEST_NAMES)}")
        if self.correction not in CORRECTION_NAMES:
            raise ValueError(f"unknown correction {self.correction!r}; valid: {', '.join(CORRECTION_NAMES)}")
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
    power: list[FamilyPower] = field(default_factory=list)
    brief: list[tuple[str, bool, str | None]] = field(default_factory=list)  # LaTeX caption parts (captions.brief)

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
    """†/‡ by the adjusted p; ``n/c`` when the test could not be computed (a NaN p with a reason in the note;
    a NaN p without one is a cell that is not tested at all, e.g. the reference)."""
    if np.isfinite(p_adjusted):
        return "‡" if p_adjusted < options.strong else "†" if p_adjusted < options.alpha else ""
    return NOT_COMPUTABLE if "not computable" in note or ZERO_VARIANCE in note else ""


def _significance(values: pd.DataFrame, dataset: str, methods: Sequence[str], slots: Sequence[Slot],
                  options: StatsOptions, pvalues: pd.DataFrame | None) -> pd.DataFrame:
    """p-values against the reference, corrected per metric over the table; empty without a reference or a
    second method. Seed-level tests run here; per-sample p-values come in as ``pvalues``."""
    ref = options.reference
    cols = ["method", "column", "metric", "p_value", "p_adjusted", "note", "n_pairs"]
    if ref is None or ref not in methods or len(methods) < 2:
        return pd.DataFrame(columns=cols)
    if options.test in PER_SAMPLE_TESTS:
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
    p-values for the per-sample tests (``randomization``, ``bootstrap``). The caption is left to
    :func:`reports.captions.describe`.
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
    power = _power(values, methods, slots, options, cells)
    _blank_reference(cells, slots, ref)
    cells["rank"] = 0
    present = set(zip(cells.index.get_level_values("column"), cells.index.get_level_values("metric"), strict=True))
    for slot in slots:
        if (slot.column, slot.metric) not in present:  # no value at all (e.g. corr of 1 test sample): shown as –
            continue
        rows = cells.xs((slot.column, slot.metric), level=("column", "metric"), drop_level=False)
        ranks = best_second(dict(zip(rows.index.get_level_values("method"), rows["mean"], strict=True)), slot)
        for method, rank in ranks.items():
            cells.loc[(method, slot.column, slot.metric), "rank"] = rank
    return Table(key, dataset, title, methods, list(columns), cells, legend=legend, reported=dict(reported or {}),
                 power=power)


def _comparisons(values: pd.DataFrame, methods: Sequence[str], slots: Sequence[Slot],
                 reference: str) -> dict[str, list[Comparison]]:
    """Per metric, every method's per-seed differences from the reference (paired on seed) in every slot."""
    out: dict[str, list[Comparison]] = {}
    for slot in slots:
        sel = values[(values["column"] == slot.column) & (values["metric"] == slot.metric)]
        wide = sel.pivot_table(index="seed", columns="method", values="value", aggfunc="first")
        if reference not in wide.columns:
            continue
        for method in (m for m in methods if m != reference and m in wide.columns):
            d = (wide[method] - wide[reference]).dropna().to_numpy(float)
            sd = float(np.std(d, ddof=1)) if len(d) >= 2 else float("nan")
            out.setdefault(slot.metric, []).append(Comparison(method, slot.column, float(np.mean(d)) if len(d)
                                                              else float("nan"), sd, len(d)))
    return out


def _power(values: pd.DataFrame, methods: Sequence[str], slots: Sequence[Slot], options: StatsOptions,
           cells: pd.DataFrame) -> list[FamilyPower]:
    """Power per comparison family (:mod:`harness.power`), and per comparison the columns ``diff`` (mean
    per-seed difference from the reference), ``diff_sd``, ``mde`` and ``seeds_needed`` of ``cells``. The family
    size is the correction family's: the comparisons of one metric with a computable p-value."""
    names = ["diff", "diff_sd", "mde", "seeds_needed"]
    for name in names:
        cells[name] = np.nan
    ref = options.reference
    if ref is None or ref not in methods or len(methods) < 2:
        return []
    test = options.test if options.test in ("ttest", "wilcoxon") else "ttest"  # power is over seeds
    families, rows = [], {}
    for metric, comps in _comparisons(values, methods, slots, ref).items():
        tested = cells.xs(metric, level="metric")["p_value"].notna().sum() if "p_value" in cells else 0
        m = int(tested) or sum(c.usable for c in comps)
        level = comparison_level(options.alpha, m, options.correction)
        for c in (c for c in comps if c.usable and (c.method, c.column, metric) in cells.index):
            rows[(c.method, c.column, metric)] = [c.diff, c.sd, detectable(c.sd, c.n, level, test),
                                                  needed(c.diff, c.sd, level, test) or np.nan]
        fam = family_power(metric, comps, options.alpha, options.correction, test, m=m)
        if fam is not None:
            families.append(fam)
    if rows:
        found = pd.DataFrame.from_dict(rows, orient="index", columns=names)
        found.index = pd.MultiIndex.from_tuples(found.index, names=cells.index.names)
        cells.update(found)
    return families


def _blank_reference(cells: pd.DataFrame, slots: Sequence[Slot], reference: str | None) -> None:
    """Blank the reference's own cell of every slot measured relative to it: its 0 is a definition, not a
    result, and must neither be shown as one nor win a bold (a reference MAE-ER of 0.000 would)."""
    for slot in (s for s in slots if s.relative_to_reference):
        key = (reference, slot.column, slot.metric)
        if key in cells.index:
            cells.loc[key, ["mean", "std", "ci_low", "ci_high"]] = np.nan
