"""The table model and renderers on hand-made numbers: best/second on both metric directions and on ties,
significance marks against scipy and a hand Holm, n < 2, captions, Markdown alignment and LaTeX structure
(reading and merging run directories is in test_report_load.py)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from records import run_record as record
from scipy import stats as sps

from harness.power import minimum_detectable_effect, seeds_needed
from harness.stats import aggregate
from reports.captions import describe
from reports.figures import band_limits, curve_figure
from reports.render import latex_escape, to_csv, to_latex, to_markdown
from reports.tables import Column, Slot, StatsOptions, best_second, build_table
from reports.views import summary_view

ACC = Slot("full", "acc2_non0", True, 100.0, "{:.1f}")
MAE = Slot("full", "mae", False, 1.0, "{:.3f}")


@pytest.mark.parametrize(("means", "slot", "expected"), [
    ({"a": 0.80, "b": 0.70, "c": 0.60}, ACC, {"a": 1, "b": 2, "c": 0}),  # higher is better
    ({"a": 0.80, "b": 0.70, "c": 0.60}, MAE, {"a": 0, "b": 2, "c": 1}),  # lower is better
    ({"a": 0.767, "b": 0.7689, "c": 0.50}, ACC, {"a": 2, "b": 1, "c": 0}),  # 76.9 beats 76.7
    ({"a": 0.80, "b": 0.80, "c": 0.70, "d": 0.60}, ACC, {"a": 1, "b": 1, "c": 2, "d": 0}),  # exact tie shares bold
    ({"a": 0.76844, "b": 0.76839, "c": 0.70}, ACC, {"a": 1, "b": 1, "c": 0}),  # both show 76.8: tie
    ({"a": 1.2004, "b": 1.2001, "c": 1.3, "d": 1.4}, MAE, {"a": 1, "b": 1, "c": 2, "d": 0}),  # both 1.200
    ({"a": 0.80, "b": 0.70}, ACC, {"a": 1, "b": 0}),  # the second of two is the worst: no underline
    ({"a": 0.80, "b": float("nan"), "c": 0.7, "d": 0.6}, ACC, {"a": 1, "b": 0, "c": 2, "d": 0}),
    ({"a": 0.80, "b": 0.80}, ACC, {"a": 0, "b": 0}),  # nothing stands out
    ({"a": 0.80}, ACC, {"a": 0}),
])
def test_best_and_second(means: dict, slot: Slot, expected: dict) -> None:
    assert best_second(means, slot) == expected


def test_display_scales_and_never_shows_minus_zero() -> None:
    assert ACC.display(0.7689) == "76.9" and MAE.display(1.23456) == "1.235" and ACC.display(float("nan")) == "–"
    assert ACC.display(-1e-17) == "0.0" and ACC.display(-0.004) == "-0.4"


def values(rows: dict[str, dict[str, list[float]]], metric: str = "acc2_non0") -> pd.DataFrame:
    """{method: {column: [value per seed]}} -> per-seed rows."""
    out = [(m, s, c, metric, v) for m, cols in rows.items() for c, vs in cols.items() for s, v in enumerate(vs)]
    return pd.DataFrame(out, columns=["method", "seed", "column", "metric", "value"])


def columns(names: list[str], metric: str = "acc2_non0", higher: bool = True, scale: float = 100.0,
            fmt: str = "{:.1f}") -> list[Column]:
    return [Column(c, (Slot(c, metric, higher, scale, fmt),)) for c in names]


REF = [0.70, 0.72, 0.71, 0.69, 0.73]
BETTER = [0.80, 0.83, 0.81, 0.80, 0.82]
NOISY = [0.72, 0.69, 0.74, 0.68, 0.73]


def test_marks_follow_scipy_and_holm_by_hand() -> None:
    vals = values({"ref": {"x": REF, "y": REF}, "good": {"x": BETTER, "y": NOISY}})
    opts = StatsOptions(reference="ref")
    table = build_table("t", "d", "title", vals, columns(["x", "y"]), opts)
    p_x = sps.ttest_rel(BETTER, REF).pvalue
    p_y = sps.ttest_rel(NOISY, REF).pvalue
    lo, hi = sorted([p_x, p_y])
    holm = {lo: 2 * lo, hi: max(2 * lo, hi)}  # m = 2 comparisons share the metric
    x, y = table.cells.loc[("good", "x", "acc2_non0")], table.cells.loc[("good", "y", "acc2_non0")]
    assert x["p_value"] == pytest.approx(p_x) and y["p_value"] == pytest.approx(p_y)
    assert x["p_adjusted"] == pytest.approx(holm[p_x]) and y["p_adjusted"] == pytest.approx(min(1.0, holm[p_y]))
    assert x["mark"] == ("‡" if holm[p_x] < 0.01 else "†") and y["mark"] == ""
    assert x["mean"] == pytest.approx(np.mean(BETTER)) and x["std"] == pytest.approx(np.std(BETTER, ddof=1))
    assert x["n"] == 5 and table.cells.loc[("ref", "x", "acc2_non0")]["mark"] == ""
    assert table.methods == ["ref", "good"]


def test_caption_groups_metrics_by_unit_and_direction() -> None:
    cols = [Column(m, (Slot(m, m, h, sc),)) for m, h, sc in
            (("acc2_non0", True, 100.0), ("acc7", True, 100.0), ("mae", False, 1.0), ("corr", True, 1.0))]
    vals = pd.concat([values({"a": {c.label: REF}}, metric=c.label) for c in cols])
    table = build_table("t", "d", "all metrics", vals, cols, StatsOptions(reference=None))
    text = describe(table, StatsOptions(reference=None), [("fixed_pattern", 1, "h")])
    assert text.startswith("acc2_non0, acc7 (%, higher is better); mae (lower is better); corr (higher is better); "
                           "all metrics; protocol fixed_pattern v1 (hash h).")


def test_one_seed_renders_with_not_computable_marks() -> None:
    vals = values({"ref": {"x": [0.7]}, "other": {"x": [0.8]}})
    opts = StatsOptions(reference="ref")
    table = build_table("t", "d", "patterns", vals, columns(["x"]), opts)
    table.caption = describe(table, opts, [("fixed_pattern", 1, "abc")])
    md = to_markdown(table)
    assert "**80.0** (n/c)" in md and "| ref " in md and "70.0" in md
    assert "n/c: significance not computable" in md and "n = 1 seed;" in md
    assert r"\textsuperscript{n/c}" in to_latex(table)


def test_equal_nonzero_differences_over_seeds_are_not_computable_not_significant() -> None:
    # two seeds, the same accuracy gap of 14.75 points on both: scipy alone gives p ~ 0 and a ‡ mark
    vals = values({"ref": {"x": [0.7, 0.8], "y": REF[:2]}, "other": {"x": [0.8475, 0.9475], "y": BETTER[:2]}})
    opts = StatsOptions(reference="ref")
    table = build_table("t", "d", "patterns", vals, columns(["x", "y"]), opts)
    table.caption = describe(table, opts, [("fixed_pattern", 1, "abc")])
    x, y = table.cells.loc[("other", "x", "acc2_non0")], table.cells.loc[("other", "y", "acc2_non0")]
    assert np.isnan(x["p_value"]) and np.isnan(x["p_adjusted"]) and x["mark"] == "n/c"
    assert "zero variance" in x["note"]
    # outside the correction family: y is adjusted over m = 1, i.e. not at all
    assert y["p_adjusted"] == pytest.approx(y["p_value"]) == pytest.approx(sps.ttest_rel(BETTER[:2], REF[:2]).pvalue)
    md = to_markdown(table)
    other = next(ln for ln in md.splitlines() if ln.startswith("| other "))
    assert other.split("|")[2].strip() == "**89.8** ± 7.1 (n/c)"  # no ‡ for a gap seen on two seeds
    assert "n/c: significance not computable (the per-seed differences are all equal, so the t-test is " \
           "undefined (zero variance))." in md
    assert "(m = 1)" in md
    assert r"\textsuperscript{n/c}" in to_latex(table)


def test_effective_robustness_of_the_reference_is_neither_shown_nor_ranked() -> None:
    # MAE effective robustness: the reference's own ER is 0 by definition and would beat both others' bold
    er = Slot("er", "mae", True, 1.0, "{:.3f}", relative_to_reference=True)
    plain = Slot("auc", "mae", False, 1.0, "{:.3f}")
    vals = pd.concat([values({"ref": {"er": [0.0] * 3}, "a": {"er": [-0.01, -0.012, -0.011]},
                              "b": {"er": [-0.03, -0.02, -0.025]}, "c": {"er": [-0.05, -0.06, -0.04]}}, "mae"),
                      values({"ref": {"auc": [0.9, 0.91, 0.92]}, "a": {"auc": [1.0, 1.1, 1.05]},
                              "b": {"auc": [1.2, 1.1, 1.3]}, "c": {"auc": [1.4, 1.5, 1.3]}}, "mae")])
    opts = StatsOptions(reference="ref")
    table = build_table("t", "d", "robustness", vals, [Column("ER", (er,)), Column("AUC", (plain,))], opts)
    ref = table.cells.loc[("ref", "er", "mae")]
    assert np.isnan(ref["mean"]) and np.isnan(ref["std"]) and ref["rank"] == 0 and ref["n"] == 3
    ranks = {m: table.cells.loc[(m, "er", "mae"), "rank"] for m in "abc"}
    assert ranks == {"a": 1, "b": 2, "c": 0}  # ranked among the others only
    assert table.cells.loc[("ref", "auc", "mae"), "rank"] == 1  # an ordinary column still ranks the reference
    p = table.cells.loc[("a", "er", "mae"), "p_value"]  # still tested against the reference's zeros
    assert p == pytest.approx(sps.ttest_rel([-0.01, -0.012, -0.011], [0.0] * 3).pvalue)
    row = next(ln for ln in to_markdown(table, caption=False).splitlines() if ln.startswith("| ref "))
    assert row.split("|")[2].strip() == "–" and "**0.000**" not in to_markdown(table)
    assert "\n" + r"ref & -- & \textbf{0.910}" in to_latex(table)


def test_summary_view_marks_effective_robustness_relative_to_the_reference() -> None:
    rows = [{**record(m, s, "full", 0.8 + 0.01 * s + 0.02 * (m == "a")), "metric": "mae"} for m in ("ref", "a")
            for s in (0, 1)]
    rows += [{**record(m, s, f"s={sev}", 0.9 + sev + 0.01 * s + 0.05 * (m == "a") * sev), "metric": "mae",
              "protocol": "noise", "severity": sev, "curve": "noise/x"}
             for m in ("ref", "a") for s in (0, 1) for sev in (0.1, 0.4)]
    view = summary_view(pd.DataFrame(rows), "mosi", ["mae"], "ref", protocol="noise")
    slots = {c.label: c.slots[0] for c in view.columns}
    assert list(slots) == ["AUC x", "AUC/clean x", "drop@max x", "ER x"]
    assert slots["ER x"].relative_to_reference and not slots["AUC x"].relative_to_reference
    assert not slots["drop@max x"].higher_is_better and not slots["AUC/clean x"].higher_is_better
    assert slots["AUC/clean x"].scale == 100.0  # a ratio, in percent of clean, whatever the metric
    table = build_table("t", "mosi", view.title, view.values, view.columns, StatsOptions(reference="ref"))
    assert np.isnan(table.cells.loc[("ref", slots["ER x"].column, "mae"), "mean"])
    # ER (lower is better) = -mean_s [0.05 s - (0.82 - 0.80)] over s = 0.1, 0.4
    assert table.cells.loc[("a", slots["ER x"].column, "mae"), "mean"] == pytest.approx(-(0.05 * 0.25 - 0.02))
    assert "ref's own ER is 0 by definition (shown as –, not ranked)" in view.legend


@pytest.mark.parametrize(("slot", "low", "high", "expected"), [
    (ACC, -0.2, 1.5, (0.0, 100.0)),  # n = 2: a t-band of an accuracy runs past 100 %
    (Slot("c", "corr", True, 1.0, "{:.3f}"), -1.4, 1.2, (-1.0, 1.0)),
    (MAE, -0.3, 2.5, (0.0, 2.5)),  # an error is never negative; no upper bound
    (Slot("c", "f1_weighted", True), 0.2, 0.9, (20.0, 90.0)),  # inside the range: unchanged
    (Slot("c", "plugin_score", True, 1.0, "{:.2f}"), -5.0, 5.0, (-5.0, 5.0)),  # unknown range: not clipped
])
def test_curve_bands_are_clipped_to_the_metric_range(slot: Slot, low: float, high: float,
                                                     expected: tuple[float, float]) -> None:
    points = pd.DataFrame({"ci_low": [low, np.nan], "ci_high": [high, np.nan]})
    ok, lo, hi = band_limits(points, slot)
    assert ok.tolist() == [True, False] and (lo[0], hi[0]) == pytest.approx(expected)


def test_curve_figure_draws_the_clipped_band() -> None:
    vals = values({"m": {"0.0": [0.95, 0.55], "0.5": [0.9, 0.3]}})  # n = 2: t = 12.7
    agg = aggregate(vals.assign(severity=vals["column"].astype(float)), by=("method", "severity"))
    assert agg["ci_high"].max() > 1.5 and agg["ci_low"].min() < -1.0  # what would be drawn unclipped
    fig = curve_figure({"noise": agg}, ACC, "t")
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(100.0) and band.min() == pytest.approx(0.0)


def test_figures_name_axes_and_methods_for_readers() -> None:
    from reports.figures import drop_figure, looks

    many = looks([f"m{i}" for i in range(40)])
    assert len({(lk.color, lk.marker, lk.linestyle) for lk in many.values()}) == 40
    assert len({lk.color for lk in list(many.values())[:8]}) == 8  # no repeated colour before the ninth method
    agg = pd.DataFrame({"method": ["vanilla_fusion", "mmin"] * 2, "severity": [0.0, 0.0, 0.5, 0.5],
                        "mean": [0.8, 0.7, 0.6, 0.65], "ci_low": np.nan, "ci_high": np.nan})
    fig = curve_figure({"gaussian, text": agg}, ACC, "t", {"gaussian, text": "noise-to-signal amplitude ratio"})
    ax = fig.axes[0]
    assert ax.get_xlabel() == "noise-to-signal amplitude ratio" and ax.get_ylabel().startswith("Acc-2 (non-0) (%)")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Vanilla fusion", "MMIN"]
    assert len({line.get_marker() for line in ax.get_lines()}) == 2
    drops = agg.rename(columns={"severity": "column"}).assign(column=["text", "text", "audio", "audio"])
    ax = drop_figure(drops, ACC, "t").axes[0]
    assert ax.get_xlabel() == "available modalities" and ax.get_ylabel()


def test_caption_states_n_test_correction_reference_protocol_and_power() -> None:
    vals = values({"ref": {"x": REF[:3]}, "other": {"x": BETTER[:3]}}, metric="mae")
    opts = StatsOptions(reference="ref", test="wilcoxon", correction="bh")
    table = build_table("t", "d", "patterns", vals, columns(["x"], "mae", False, 1.0, "{:.3f}"), opts)
    text = describe(table, opts, [("fixed_pattern", 1, "a506328e0b47")], ["dataset d uses the smoke-test preset"])
    for needed in ["mae, lower is better", "n = 3 seeds", "Wilcoxon signed-rank test", "Benjamini-Hochberg",
                   "against ref", "fixed_pattern v1 (hash a506328e0b47)", "selected on the validation split",
                   "Wilcoxon signed-rank with n=3 cannot reach p<0.05", "use at least 6 seeds",
                   "(m = 1)", "PARTIAL RUN, not reportable: dataset d uses the smoke-test preset"]:
        assert needed in text, needed
    assert table.cells.loc[("ref", "x", "mae")]["rank"] == 1  # lower MAE wins


def test_caption_and_csv_state_the_minimum_detectable_effect() -> None:
    vals = values({"ref": {"x": REF, "y": REF}, "good": {"x": BETTER, "y": NOISY}})
    opts = StatsOptions(reference="ref")
    table = build_table("t", "d", "patterns", vals, columns(["x", "y"]), opts)
    diffs = {c: np.subtract(v, REF) for c, v in (("x", BETTER), ("y", NOISY))}
    sd = np.sqrt(np.mean([np.var(d, ddof=1) for d in diffs.values()]))  # pooled over the family (m = 2)
    (fam,) = table.power
    assert fam.m == 2 and fam.n == 5 and fam.sd == pytest.approx(sd)
    assert fam.mde == pytest.approx(minimum_detectable_effect(sd, 5, 0.05 / 2))
    text = describe(table, opts, [("p", 1, "h")])
    assert f"differences smaller than {100 * fam.mde:.1f} points are likely to be missed" in text
    assert "level 0.05/2 after Holm" in text and "largest observed difference (+10.2 points, good, x)" in text
    csv = pd.read_csv(__import__("io").StringIO(to_csv(table))).set_index(["method", "column"])
    y = csv.loc[("good", "y")]
    assert y["diff"] == pytest.approx(np.mean(diffs["y"])) and y["diff_sd"] == pytest.approx(np.std(diffs["y"], ddof=1))
    assert y["seeds_needed"] == seeds_needed(np.mean(diffs["y"]), np.std(diffs["y"], ddof=1), 0.05 / 2)
    assert np.isnan(csv.loc[("ref", "y"), "mde"])


def test_varying_seed_counts_and_holm_floor_are_stated() -> None:
    vals = values({"ref": {c: REF[:4] for c in "abcdefgh"}, "m": {c: BETTER[:4] for c in "abcdefgh"}})
    vals = vals[~((vals.method == "m") & (vals.column == "a") & (vals.seed == 3))]
    opts = StatsOptions(reference="ref", test="wilcoxon")
    table = build_table("t", "d", "patterns", vals, columns(list("abcdefgh")), opts)
    text = describe(table, opts, [("p", 1, "h")])
    assert "n = 3–4 seeds (varies by cell)" in text and "cannot reach p<0.05" in text
    six = {"ref": {c: [*REF, 0.7] for c in "abcdefgh"}, "m": {c: [*BETTER, 0.8] for c in "abcdefgh"}}
    table = build_table("t", "d", "patterns", values(six), columns(list("abcdefgh")), opts)
    text = describe(table, opts, [("p", 1, "h")])  # 2 / 2^6 < 0.05, but not after Holm over 8
    assert "after Holm over 8 comparisons the smallest attainable adjusted p with n=6 is 0.25" in text


def _cells_in(row: str) -> int:
    """Columns a tabular row fills: &-separated cells, a \\multicolumn{k} counting k."""
    parts = re.split(r"(?<!\\)&", row)
    return sum(int(m.group(1)) if (m := re.search(r"\\multicolumn\{(\d+)\}", p)) else 1 for p in parts)


def check_latex_structure(tex: str) -> None:
    """What must hold for the fragment to compile: balanced braces, inline math ``$...$`` closed on its line,
    floats and tabulars closed, in every tabular booktabs rules in order and every row filling as many columns
    as its spec has, no raw underscores or non-ASCII characters."""
    body = re.sub(r"\\[{}&%$#_]", "", tex)
    depth = 0
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, "a } closes nothing"
    assert depth == 0, "unbalanced braces"
    for line in tex.splitlines():  # mibench writes inline math only, never across lines
        assert len(re.findall(r"(?<!\\)\$", line)) % 2 == 0, f"unpaired $ in {line!r}"
    floats = re.findall(r"\\begin\{(table\*?)\}", tex)
    assert floats and len(floats) == len(re.findall(r"\\end\{table\*?\}", tex)), "floats not closed"
    tabulars = re.findall(r"\\begin\{tabular\}\{@\{\}(l(?:[rlc]|p\{\d+pt\})*)@\{\}\}\n(.*?)\\end\{tabular\}", tex, re.S)
    assert tabulars, "no tabular"
    assert len(tabulars) == tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}"), "a tabular is not closed"
    for spec, inner in tabulars:
        ncols = len(re.findall(r"[rlc]|p\{\d+pt\}", spec))
        lines = inner.splitlines()
        rules = [ln for ln in lines if ln in (r"\toprule", r"\midrule", r"\bottomrule")]
        assert rules == [r"\toprule", r"\midrule", r"\bottomrule"], "booktabs rules missing"
        rows = [r for r in lines if r not in rules and not r.startswith(r"\cmidrule")]
        assert rows and all(r.endswith(r"\\") for r in rows)
        cells = [_cells_in(r) for r in rows]
        assert set(cells) == {ncols}, f"cells per row {cells}, column spec {spec!r}"
    assert not re.search(r"(?<!\\)_", re.sub(r"\\label\{[^}]*\}", "", tex)), "unescaped underscore"
    assert all(ord(ch) < 128 for ch in tex), "non-ASCII character in LaTeX output"


def small_latex() -> str:
    vals = values({"ref": {"x": REF, "y": REF}, "my_method": {"x": BETTER, "y": NOISY}})
    opts = StatsOptions(reference="ref")
    table = build_table("d__t", "d", "patterns", vals, columns(["x", "y"]), opts)
    table.caption = describe(table, opts, [("fixed_pattern", 1, "h")])
    return to_latex(table)


@pytest.mark.parametrize(("old", "new", "message"), [
    (r"$\pm$", r"\pm$", "unpaired \\$"),  # a $ lost
    (r"\textbf{", r"\textbf", "a } closes nothing"),  # an opening brace lost
    (r"\\" + "\n" + r"\bottomrule", r"\\" + "\n", "booktabs rules missing"),
    ("\\toprule\nmethod & x", "\\toprule\nmethod & extra & x", "cells per row"),  # one cell too many
    (r"my\_method", "my_method", "unescaped underscore"),
])
def test_latex_structure_check_catches_broken_fragments(old: str, new: str, message: str) -> None:
    tex = small_latex()
    check_latex_structure(tex)  # the renderer's output passes
    assert old in tex, old
    with pytest.raises(AssertionError, match=message):
        check_latex_structure(tex.replace(old, new, 1))


def test_renderers_on_a_composite_table() -> None:
    vals = pd.concat([values({"vanilla_fusion": {"full": REF}, "my_method": {"full": BETTER}}),
                      values({"vanilla_fusion": {"full": [1.1, 1.2, 1.0, 1.1, 1.2]},
                              "my_method": {"full": [0.9, 0.95, 0.92, 0.9, 0.91]}}, metric="mae")])
    col = [Column("full", (Slot("full", "acc2_non0", True), Slot("full", "mae", False, 1.0, "{:.3f}")))]
    opts = StatsOptions(reference="vanilla_fusion")
    table = build_table("d__composite", "d", "patterns", vals, col, opts)
    table.caption = describe(table, opts, [("fixed_pattern", 1, "h")])
    md = to_markdown(table)
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len({len(ln) for ln in lines}) == 1, "Markdown columns must be aligned"
    assert "**81.2**±0.0" not in md and "**81.2**±" in md and "**0.916**±" in md and " / " in md
    assert "each cell acc2_non0 (%, higher is better) / mae (lower is better)" in md
    tex = to_latex(table)
    check_latex_structure(tex)
    assert r"\textbf{81.2}" in tex and r"my\_method" in tex and r"$^{\ddagger}$" in tex
    assert "\nVanilla fusion & " in tex  # paper tables name methods by their card labels
    csv = pd.read_csv(__import__("io").StringIO(to_csv(table)))
    assert len(csv) == 4 and set(csv.metric) == {"acc2_non0", "mae"}
    row = csv[(csv.method == "my_method") & (csv.metric == "acc2_non0")].iloc[0]
    assert row["mean"] == pytest.approx(np.mean(BETTER)) and row["rank"] == 1 and row["mark"] == "‡"


def test_latex_escape() -> None:
    assert latex_escape("a_b & 50% #1 {x} ~ ^ \\ ±†‡–≥<") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} "
        r"$\pm$$^{\dagger}$$^{\ddagger}$--$\geq$$<$")
    with pytest.raises(ValueError, match="no LaTeX form"):
        latex_escape("é")
