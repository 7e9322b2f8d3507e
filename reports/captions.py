"""Table captions: what a reader needs to trust the numbers, stated once per table.

The caption names the metric and its direction, the table and its protocol (name, version, hash), n, the
split policy, the bold rule, the test with its correction, family and reference, why a mark could not be
computed, any power warning, and whether the run is partial. Pure text built from a
:class:`reports.tables.Table` and the :class:`reports.tables.StatsOptions` that made it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from harness.power import TARGET_POWER, FamilyPower
from harness.stats import NOT_COMPUTABLE as NOT_COMPUTABLE_N
from harness.stats import ZERO_VARIANCE, min_attainable_p, power_warning
from reports.names import method_label, metric_label
from reports.tables import (
    CORRECTION_NAMES,
    NOT_COMPUTABLE,
    PER_SAMPLE_TESTS,
    TEST_NAMES,
    Column,
    Slot,
    StatsOptions,
    Table,
)

MANY_SEEDS = 1000  # above this, "would need N seeds" is stated as "more than 1000"
# why a comparison is n/c, by the note harness.stats or reports.persample left on it
_NC_REASONS = {NOT_COMPUTABLE_N: "fewer than 2 paired seeds",
               ZERO_VARIANCE: "the per-seed differences are all equal, so the t-test is undefined (zero variance)",
               "no common seed": "no common seed", "different draws": "the two methods have different draws"}


def test_description(options: StatsOptions) -> str:
    """How the test runs, e.g. ``over seeds against ref, paired on seed`` (for captions and report.md)."""
    ref = options.reference
    if options.test == "randomization":
        return (f"over test samples ({options.n_permutations} permutations, predictions swapped within each "
                f"seed) against {ref} on their common seeds")
    if options.test == "bootstrap":
        return (f"over test samples ({options.n_permutations} resamples of the test rows, shared by every seed "
                f"and draw, centred on the observed difference) against {ref} on their common seeds")
    return f"over seeds against {ref}, paired on seed"


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
    correction = CORRECTION_NAMES[options.correction]
    how = test_description(options)
    out = [f"† p < {options.alpha:g}, ‡ p < {options.strong:g} after {correction} correction: two-sided "
           f"{TEST_NAMES[options.test]} {how}; family: the comparisons of this table sharing a metric ({fam}). "
           "Marks flag a difference in either direction."]
    untested = cells.index.get_level_values("method") != options.reference
    if options.test in PER_SAMPLE_TESTS and cells.loc[untested, "p_value"].isna().any():
        what = "Derived columns and averages over draws are" if options.test == "randomization" else \
            "Derived columns are"
        out.append(f"{what} not tested (the per-sample test needs the stored predictions of the conditions).")
    out += _not_computable_text(cells)
    power = power_text(table, options)
    if power:
        out.append(power)
    n_pairs = cells["n_pairs"].dropna().astype(int) if "n_pairs" in cells else pd.Series(dtype=int)
    if len(n_pairs) and n_pairs.min() >= 2 and options.test not in PER_SAMPLE_TESTS:
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


def _amount(value: float, slot: Slot) -> str:
    """A difference in display units: ``9.8 points`` for metrics shown in percent, else the metric's format."""
    text = slot.display(abs(value))
    return f"{text} points" if slot.scale == 100.0 else text


def _level_text(fam: FamilyPower, options: StatsOptions) -> str:
    if options.correction == "none" or fam.m <= 1:
        return f"level {options.alpha:g}"
    return f"level {options.alpha:g}/{fam.m} after {CORRECTION_NAMES[options.correction]}"


def _needs_text(fam: FamilyPower, slot: Slot, labels: dict[str, str]) -> str:
    big = fam.largest
    what = f"the largest observed difference ({'+' if big.diff > 0 else '-'}{_amount(big.diff, slot)}, " \
           f"{big.method}, {labels.get(big.column, big.column)})"
    if fam.largest_needs is None or fam.largest_needs > MANY_SEEDS:
        return f"{what} would need more than {MANY_SEEDS} seeds"
    return f"{what} would need {fam.largest_needs} seeds (this run has {fam.n})"


def power_text(table: Table, options: StatsOptions) -> str:
    """One sentence: per comparison family, the minimum detectable effect at 80 % power given the observed
    seed-to-seed spread, n and the correction, and the seeds the largest observed difference would need
    (:mod:`harness.power`); empty without comparisons."""
    slots = {s.metric: s for c in table.columns if not c.reported for s in c.slots}
    labels = {s.column: c.label for c in table.columns if not c.reported for s in c.slots}
    fams = [f for f in table.power if f.metric in slots]
    if not fams:
        return ""
    pct = f"{TARGET_POWER:.0%}".replace("%", " %")
    how = "paired t-test computation" if options.test != "wilcoxon" else "Wilcoxon test, t approximation"
    parts = []
    for fam in fams:
        slot, name = slots[fam.metric], f"{fam.metric}: " if len(fams) > 1 else ""
        if not np.isfinite(fam.mde):
            parts.append(f"{name}with n = {fam.n} seeds no difference can reach {_level_text(fam, options)}, and "
                         f"{_needs_text(fam, slot, labels)}")
            continue
        parts.append(f"{name}differences smaller than {_amount(fam.mde, slot)} are likely to be missed "
                     f"(observed per-seed SD of differences {slot.display(fam.sd)}, n = {fam.n} seeds, "
                     f"{_level_text(fam, options)}), and {_needs_text(fam, slot, labels)}")
    return f"Power ({pct}, {how} over seeds): " + "; ".join(parts) + "."


def _not_computable_text(cells: pd.DataFrame) -> list[str]:
    notes = cells.loc[cells["mark"] == NOT_COMPUTABLE, "note"].astype(str)
    if notes.empty:
        return []
    reasons = [text for key, text in _NC_REASONS.items() if notes.str.contains(key, regex=False).any()]
    why = f" ({'; '.join(reasons)})" if reasons else ""
    return [f"n/c: significance not computable{why}."]


def describe(table: Table, options: StatsOptions, protocols: Sequence[tuple[str, int, str]],
             partial_reasons: Sequence[str] = (), selection: str = "the validation split") -> str:
    """The caption (after the dataset name): metric and direction, protocol, n, how checkpoints were selected
    (``selection``, e.g. ``validation MAE, complete inputs``), test, correction, power and caveats."""
    proto = ", ".join(f"{name} v{version} (hash {digest})" for name, version, digest in protocols)
    ci = set(table.cells["ci_method"]) if len(table.cells) else {"t"}
    title = f"{table.title} ({table.legend})" if table.legend else table.title
    parts = [f"{_metric_text(table.columns)}; {title}; protocol {proto}.",
             f"Mean ± sample std (ddof=1) over {_seed_text(table.cells['n'].to_numpy())}; checkpoints selected on "
             f"{selection}, scores on the test split.",
             "Bold: best, underlined: second best per column (by the metric's direction; means equal at the "
             "displayed precision tie)."]
    if "bootstrap" in ci:
        rest = "; Student-t over seeds for derived columns" if "t" in ci else ""
        parts.append("Intervals in the CSV: percentile bootstrap over test samples of the seed mean (the same "
                     f"resampled rows for every seed and draw){rest}.")
    parts += _test_text(table, options)
    if any(c.reported for c in table.columns):
        parts.append("Columns marked (paper) give the value reported in the method's paper, not reproduced.")
    if partial_reasons:
        partial_reasons = sorted(partial_reasons, key=lambda r: table.dataset not in r)  # this dataset's first
        more = f" and {len(partial_reasons) - 1} more reason(s), see report.md" if len(partial_reasons) > 1 else ""
        parts.append(f"PARTIAL RUN, not reportable: {partial_reasons[0]}{more}.")
    return " ".join(parts)



def _brief_metrics(columns: Sequence[Column]) -> str:
    first: dict[str, Slot] = {}
    for slot in (s for c in columns if not c.reported for s in c.slots):
        first.setdefault(slot.metric, slot)
    slots = list(first.values())
    if len(slots) == 1:
        s = slots[0]
        return f"{metric_label(s.metric)}{' (%)' if s.scale == 100.0 else ''}, " \
               f"{'higher' if s.higher_is_better else 'lower'} is better"
    return ", ".join(f"{metric_label(s.metric)}{'↑' if s.higher_is_better else '↓'}" for s in slots)


def _brief_power(table: Table, compact: bool = False) -> str:
    slots = {s.metric: s for c in table.columns if not c.reported for s in c.slots}
    fams = [f for f in table.power if f.metric in slots]
    if not fams:
        return ""
    pct = f"{TARGET_POWER:.0%}".replace("%", " %")
    what = f"MDE ({pct} power)" if compact else f"minimum detectable difference at {pct} power"
    if len(fams) == 1 and not np.isfinite(fams[0].mde):
        return f"with n = {fams[0].n} seeds no difference is detectable after the correction"
    if len(fams) == 1:
        return f"{what}: {_amount(fams[0].mde, slots[fams[0].metric])}"
    each = ", ".join(slots[f.metric].display(f.mde) if np.isfinite(f.mde) else "none" for f in fams)
    by_column = all(len(c.slots) == 1 for c in table.columns) and len(fams) == len(table.columns)
    return f"{what.replace('difference', 'differences')}, {'by column' if by_column else 'per metric'}: {each}"


def brief(table: Table, options: StatsOptions, partial: bool = False) -> list[tuple[str, bool, str | None]]:
    """A short caption for paper tables, as parts ``(text, required, compact text)``: the renderer keeps the
    required parts (in their compact form where the full one does not fit) and as many optional ones as fit in
    three lines; the full caption goes into a table note. The minimum detectable effect (MDE) is required."""
    seeds = _seed_text(table.cells["n"].to_numpy()) if len(table.cells) else "n = 0 seeds"
    power, short_power = _brief_power(table), _brief_power(table, compact=True)
    metrics = _brief_metrics(table.columns)
    several = "↑" in metrics or "↓" in metrics
    compact_head = f"{table.dataset}: {table.title}." if several else \
        f"{table.dataset}, {metrics.replace(', higher is better', ' ↑').replace(', lower is better', ' ↓')}: " \
        f"{table.title}."
    parts = [(f"{table.dataset}: {metrics}; {table.title}.", True, compact_head),
             (f"Mean ± std over {seeds}" + (f"; {power}." if power else "."), True,
              f"{seeds}" + (f"; {short_power}." if short_power else "."))]
    if several:
        parts.append(("↑/↓: higher/lower is better.", False, ""))
    if partial:
        parts.append(("PARTIAL RUN, not reportable.", True, "PARTIAL RUN."))
    ref = options.reference
    if ref is not None and ref in table.methods and len(table.methods) > 1:
        parts.append((f"† p < {options.alpha:g}, ‡ p < {options.strong:g} vs {method_label(ref)} "
                      f"({TEST_NAMES[options.test]}, {CORRECTION_NAMES[options.correction]}).", False,
                      f"†/‡ p < {options.alpha:g}/{options.strong:g} vs {method_label(ref)}."))
    parts.append(("Bold: best; underlined: second. Full statement below.", False, "Details below."))
    return parts
