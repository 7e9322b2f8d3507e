"""Reports from a real (tiny) run: tables in every format, LaTeX that compiles, figures, the index, the
bootstrap option, merging, and the `mibench report` command with its errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from test_report_tables import check_latex_structure, values
from typer.testing import CliRunner

from harness import runner
from harness.cli import app
from harness.config import RunConfig
from harness.registry import METRICS as METRIC_SPECS
from harness.registry import PROTOCOLS
from harness.resampling import seed_paired_bootstrap_test
from harness.stats import aggregate
from reports.captions import describe
from reports.load import Results, load_results
from reports.persample import bootstrap_intervals, persample_pvalues
from reports.render import to_latex
from reports.report import ReportOptions, build_tables, write_report
from reports.tables import Column, Slot, StatsOptions, build_table

cli = CliRunner()
METRICS = ("acc2_non0", "mae")
REF = StatsOptions(reference="vanilla_fusion")


def declare_reference(run_dir: Path, method: str) -> None:
    """What the training side records (run.json ``reference``, from the method cards), for runs of plugin methods."""
    meta = json.loads((run_dir / "run.json").read_text())
    if not meta.get("reference"):
        (run_dir / "run.json").write_text(json.dumps({**meta, "reference": method}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two methods x 3 seeds on tiny synth-mosi, under fixed_pattern and a non-uniform severity curve."""
    out = tmp_path_factory.mktemp("reports") / "run"
    cfg = RunConfig(methods=("vanilla_fusion", "test_plugin_mean"), datasets=("synth-mosi",), seeds=(0, 1, 2),
                    protocols=("fixed_pattern", "test_random_drop"), preset="tiny", out=str(out), device="cpu",
                    method_options={"*": {"epochs": 2, "batch_size": 32}}, plugins=("plugin_method", "plugin_protocol"))
    summary = runner.run(cfg)
    assert not summary.failed
    declare_reference(out, "vanilla_fusion")
    yield out
    PROTOCOLS.remove("test_random_drop")  # registered by the run; other modules never see it


@pytest.fixture(scope="module")
def report(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list, Path]:
    out = tmp_path_factory.mktemp("report")
    options = ReportOptions(metrics=METRICS, formats=("md", "latex", "csv"), stats=REF)
    return write_report(load_results([run_dir], allow_partial=True), options, out)


def test_tables_are_the_records_aggregated(run_dir: Path, report: tuple[list, Path]) -> None:
    tables, index = report
    keys = [t.key for t in tables]
    assert keys == ["synth-mosi__overview", "synth-mosi__fixed_pattern__acc2_non0", "synth-mosi__fixed_pattern__mae",
                    "synth-mosi__test_random_drop__all__acc2_non0", "synth-mosi__test_random_drop__all__mae",
                    "synth-mosi__test_random_drop__text__acc2_non0", "synth-mosi__test_random_drop__text__mae",
                    "synth-mosi__robustness__acc2_non0", "synth-mosi__robustness__mae",
                    "synth-mosi__robustness__test_random_drop__acc2_non0",
                    "synth-mosi__robustness__test_random_drop__mae"]
    drawn = tables[3]  # two mask draws per rate, averaged per training seed
    assert [c.label for c in drawn.columns] == ["all/r=0.1", "all/r=0.25", "all/r=0.5", "all/r=0.8"]
    assert "each column is the mean over its 2 draws" in drawn.caption
    csv = pd.read_csv(index.parent / "tables" / "synth-mosi__fixed_pattern__mae.csv")
    records = pd.read_json(run_dir / "records.jsonl", lines=True)
    mae = records[(records.metric == "mae") & (records.protocol == "fixed_pattern")]
    expected = aggregate(mae, by=("method", "condition")).set_index(["method", "condition"])
    for row in csv[csv.column != "mean (incomplete)"].itertuples():
        assert row.mean == pytest.approx(expected.loc[(row.method, row.column), "mean"])
        assert row.std == pytest.approx(expected.loc[(row.method, row.column), "std"]) and row.n == 3
    test_rows = csv[csv.method == "test_plugin_mean"]
    assert test_rows.p_value.notna().all() and (csv[csv.method == "vanilla_fusion"].p_value.isna()).all()
    best = csv.loc[csv.groupby("column")["mean"].idxmin()]  # lower MAE is better: rank 1 (or a display tie)
    assert set(best["rank"]) == {1}
    patterns = pd.read_csv(index.parent / "tables" / "synth-mosi__robustness__acc2_non0.csv")
    assert list(dict.fromkeys(patterns.column)) == ["clean", "mean (incomplete)", "worst pattern", "drop (incomplete)"]
    curves = pd.read_csv(index.parent / "tables" / "synth-mosi__robustness__test_random_drop__acc2_non0.csv")
    assert list(dict.fromkeys(curves.column)) == ["AUC all", "AUC/clean all", "drop@max all", "ER all", "AUC text",
                                                  "AUC/clean text", "drop@max text", "ER text"]
    assert tables[-1].caption.startswith("mae, lower is better; robustness of test_random_drop (AUC = mean level")
    assert tables[-3].caption.startswith("mae, lower is better; robustness to missing-modality patterns (drop =")


def test_markdown_is_aligned_and_index_embeds_everything(report: tuple[list, Path]) -> None:
    tables, index = report
    md = (index.parent / "tables" / "synth-mosi__fixed_pattern__acc2_non0.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(rows) == 4 and len({len(ln) for ln in rows}) == 1
    assert "n = 3 seeds" in md and "paired t-test" in md and "Holm" in md
    assert re.search(r"fixed_pattern v\d+ \(hash [0-9a-f]+\)", md)
    assert "PARTIAL RUN, not reportable" in md
    text = index.read_text()
    assert "Partial results" in text and "tiny" in text
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert any(x.endswith(".png") for x in links) and any(x.endswith(".tex") for x in links)
    for link in links:
        assert not Path(link).is_absolute() and (index.parent / link).is_file(), link
    assert md.split("\n\n", 1)[1].strip() in text  # the tables are embedded, not only linked


LATEX_ENGINES = ("pdflatex", "lualatex", "xelatex", "tectonic")
LATEX = next((engine for engine in LATEX_ENGINES if shutil.which(engine)), None)


def test_latex_structure(report: tuple[list, Path]) -> None:
    _, index = report
    fragments = sorted((index.parent / "tables").glob("*.tex"))
    assert len(fragments) == 12  # 11 result tables and the per-method table
    for fragment in fragments:
        check_latex_structure(fragment.read_text())


def _marks_fragment() -> str:
    """A composite table with every mark the renderer writes: bold, underline, ‡, n/c and a blank cell."""
    vals = pd.concat([values({"ref": {"x": [0.70, 0.72, 0.71]}, "a_b": {"x": [0.80, 0.83, 0.81]},
                              "c%d": {"x": [0.60, 0.50, 0.55]}, "one": {"x": [0.9]}}),
                      values({"ref": {"x": [1.1, 1.2, 1.0]}, "a_b": {"x": [0.9, 0.95, 0.92]}}, metric="mae")])
    col = [Column("x & y_1", (Slot("x", "acc2_non0", True), Slot("x", "mae", False, 1.0, "{:.3f}")))]
    opts = StatsOptions(reference="ref")
    table = build_table("d__marks", "d#1", "marks", vals, col, opts)
    table.caption = describe(table, opts, [("fixed_pattern", 1, "h")])
    tex = to_latex(table)
    check_latex_structure(tex)
    for needed in (r"\textbf{", r"\underline{", r"\textsuperscript{n/c}", r"$^{\ddagger}$", " --"):
        assert needed in tex, needed
    return tex


def _latex_command(engine: str, doc: Path) -> list[str]:
    if engine == "tectonic":  # stops at the first error by itself; keeps doc.log for the failure message
        return ["tectonic", "--keep-logs", "--chatter", "minimal", doc.name]
    return [engine, "-interaction=nonstopmode", "-halt-on-error", doc.name]


@pytest.mark.skipif(LATEX is None, reason="no LaTeX engine (pdflatex/lualatex/xelatex/tectonic) on PATH")
def test_latex_compiles(report: tuple[list, Path], tmp_path: Path) -> None:
    """Every fragment, \\input into a minimal article that loads only booktabs (what docs/reports.md promises:
    the renderer's \\underline, \\textsuperscript, \\scriptsize and math symbols are all in the LaTeX kernel)."""
    assert LATEX is not None
    _, index = report
    shutil.copytree(index.parent / "tables", tmp_path / "tables")
    fragments = sorted((tmp_path / "tables").glob("*.tex"))
    assert len(fragments) == 12
    (tmp_path / "tables" / "marks.tex").write_text(_marks_fragment())
    fragments.append(tmp_path / "tables" / "marks.tex")
    inputs = "".join(f"\\input{{tables/{f.name}}}\n\\clearpage\n" for f in fragments)  # clearpage: no float pile-up
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\begin{document}\n"
                   + inputs + "\\end{document}\n")
    res = subprocess.run(_latex_command(LATEX, doc), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    log = tmp_path / "doc.log"
    tail = (log.read_text(errors="replace") if log.is_file() else res.stdout + res.stderr)[-3000:]
    assert res.returncode == 0, f"{LATEX} failed:\n{tail}"
    assert (tmp_path / "doc.pdf").stat().st_size > 1000, tail
    assert "Overfull \\hbox" not in log.read_text(errors="replace"), "a table is wider than the text"


def test_figures_exist_as_png_and_pdf(report: tuple[list, Path]) -> None:
    _, index = report
    figures = index.parent / "figures"
    for stem in ("synth-mosi__heatmap__acc2_non0", "synth-mosi__drop__acc2_non0",
                 "synth-mosi__curves_test_random_drop__acc2_non0"):
        png, pdf = figures / f"{stem}.png", figures / f"{stem}.pdf"
        assert png.stat().st_size > 10_000 and pdf.stat().st_size > 5_000, stem
        image = mpimg.imread(png)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
        assert pdf.read_bytes().startswith(b"%PDF")
    assert not list(figures.glob("*__mae.*")), "figures default to each dataset's first metric"


def test_bootstrap_intervals_from_predictions(run_dir: Path) -> None:
    options = ReportOptions(metrics=("acc2_non0",), ci="bootstrap", n_resamples=200)
    results = load_results([run_dir], allow_partial=True)
    first = build_tables(results, options)
    cells = first[1].cells  # fixed_pattern, acc2_non0
    boot = cells[cells.ci_method == "bootstrap"]
    assert len(boot) == 2 * 7 and (cells.loc[cells.ci_method == "t"].index.get_level_values("column")
                                    == "mean (incomplete)").all()
    assert ((boot.ci_low <= boot["mean"] + 1e-12) & (boot["mean"] <= boot.ci_high + 1e-12)).all()
    again = build_tables(results, options)[1].cells
    assert np.array_equal(again.ci_low.to_numpy(), cells.ci_low.to_numpy(), equal_nan=True)  # fixed generator
    drawn = first[2]  # test_random_drop/all: every column averages two mask draws, and is bootstrapped too
    assert (drawn.cells.ci_method == "bootstrap").all()
    assert "percentile bootstrap over test samples of the seed mean (the same resampled rows for every seed and " \
           "draw)" in drawn.caption and "Student-t over seeds for derived columns" in first[1].caption


def _draw_arrays(results: Results, method: str, names: list[str]) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """[seed][draw] stored predictions of conditions ``names`` of test_random_drop, and the target."""
    out = []
    for seed in (0, 1, 2):
        stored = results.predictions("synth-mosi", method, seed)
        index = list(stored["conditions"])
        out.append([stored["pred"][index.index(f"test_random_drop/{name}")] for name in names])
    return out, stored["target"]


def test_bootstrap_of_averaged_draws_by_hand(run_dir: Path) -> None:
    results = load_results([run_dir], allow_partial=True)
    names = ["all/r=0.5/draw=0", "all/r=0.5/draw=1"]
    preds, target = _draw_arrays(results, "test_plugin_mean", names)  # methods are visited in sorted order: first
    acc = METRIC_SPECS.get("acc2_non0")

    def by_hand(*arrays: np.ndarray) -> float:  # 3 seeds x 2 draws, then the target: mean of draws, then of seeds
        *flat, t = arrays
        return float(np.mean([np.mean([acc(flat[2 * k + d], t) for d in (0, 1)]) for k in range(3)]))

    keyword = "rng" if "rng" in __import__("inspect").signature(sps.bootstrap).parameters else "random_state"
    expected = sps.bootstrap((*[p for draws in preds for p in draws], target), by_hand, paired=True,
                             vectorized=False, n_resamples=150, method="percentile",
                             **{keyword: np.random.default_rng(4)}).confidence_interval
    got = bootstrap_intervals(results, "synth-mosi", "test_random_drop", ["acc2_non0"], rng=np.random.default_rng(4),
                              conditions=["all/r=0.5"], curve="test_random_drop/all", n_resamples=150)
    row = got.set_index("method").loc["test_plugin_mean"]
    assert row["column"] == "all/r=0.5" and (row.ci_low, row.ci_high) == pytest.approx(tuple(expected))
    table = build_tables(results, ReportOptions(metrics=("acc2_non0",), stats=REF))[2]
    cell_mean = table.cells.loc[("test_plugin_mean", "all/r=0.5", "acc2_non0"), "mean"]
    assert cell_mean == pytest.approx(by_hand(*[p for draws in preds for p in draws], target))  # same average


def test_paired_bootstrap_test_from_predictions(run_dir: Path, tmp_path: Path) -> None:
    options = ReportOptions(metrics=("mae",), formats=("md",), figures="none",
                            stats=StatsOptions(reference="vanilla_fusion", test="bootstrap",
                                               n_permutations=99))
    results = load_results([run_dir], allow_partial=True)
    tables, index = write_report(results, options, tmp_path / "rep")
    patterns, drawn, summary = tables[1], tables[2], tables[-1]
    other = patterns.cells.xs("test_plugin_mean", level="method")
    tested = other.drop(index="mean (incomplete)", level="column")
    assert tested.p_value.between(1 / 100, 1).all() and (tested.n_pairs == 3).all()
    assert np.isnan(other.loc[("mean (incomplete)", "mae"), "p_value"]) and summary.cells.p_value.isna().all()
    assert drawn.cells.xs("test_plugin_mean", level="method").p_value.notna().all()  # averaged draws: tested
    assert "seed-pooled paired bootstrap test over test samples (99 resamples" in patterns.caption
    assert "Derived columns are not tested" in patterns.caption and "Warning" not in patterns.caption
    assert "Significance: two-sided seed-pooled paired bootstrap test over test samples" in index.read_text()
    # one averaged column by hand: the same generator state through the library function
    names = ["all/r=0.8/draw=0", "all/r=0.8/draw=1"]
    (a, target), (b, _) = (_draw_arrays(results, m, names) for m in ("test_plugin_mean", "vanilla_fusion"))
    mae = METRIC_SPECS.get("mae")
    expected = seed_paired_bootstrap_test(a, b, target, mae, False, rng=np.random.default_rng(1), n_resamples=99)
    got = persample_pvalues(results, "synth-mosi", "test_random_drop", ["mae"], "vanilla_fusion", test="bootstrap",
                            rng=np.random.default_rng(1), conditions=["all/r=0.8"], curve="test_random_drop/all",
                            count=99)
    assert got["p_value"].tolist() == [expected.p_value] and got["n_pairs"].tolist() == [3]


def test_randomization_test_from_predictions(run_dir: Path) -> None:
    options = ReportOptions(metrics=("mae",), stats=StatsOptions(reference="vanilla_fusion", test="randomization",
                                                                 n_permutations=99))
    tables = build_tables(load_results([run_dir], allow_partial=True), options)
    patterns, summary = tables[1], tables[-1]
    other = patterns.cells.xs("test_plugin_mean", level="method")
    tested = other.drop(index="mean (incomplete)", level="column")
    assert tested.p_value.between(1 / 100, 1).all() and (tested.n_pairs == 3).all()
    assert other.loc[("mean (incomplete)", "mae"), "p_value"] != other.loc[("mean (incomplete)", "mae"), "p_value"]
    assert summary.cells.p_value.isna().all()
    assert "seed-stratified approximate randomization test over test samples (99 permutations" in patterns.caption
    assert "Derived columns and averages over draws are not tested" in patterns.caption
    text = tables[3].cells.xs("test_plugin_mean", level="method")  # one draw per rate: tested
    assert text.p_value.notna().all()
    drawn = tables[2].cells.xs("test_plugin_mean", level="method")  # averaged draws: no per-sample test
    assert drawn.p_value.isna().all()


def test_merging_a_copy_keeps_the_first(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    merged = load_results([run_dir, copy], allow_partial=True)
    assert len(merged.records) == len(load_results([run_dir], allow_partial=True).records)
    assert "repeat records of an earlier run" in merged.notes[0]


def test_report_command(run_dir: Path, tmp_path: Path) -> None:
    res = cli.invoke(app, ["report", str(run_dir), "--metric", "mae"])
    assert res.exit_code == 2 and "is not reportable: dataset synth-mosi uses the smoke-test preset 'tiny'" in \
        res.output.replace("\n", " ") and "--allow-partial" in res.output
    out = tmp_path / "rep"
    res = cli.invoke(app, ["report", str(run_dir), "--metric", "mae", "--format", "md,latex", "--allow-partial",
                           "--composite", "--test", "wilcoxon", "--correction", "bh", "--figures", "none",
                           "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Wilcoxon signed-rank with n=3 cannot reach p<0.05" in res.output and "Benjamini-Hochberg" in res.output
    assert (out / "report.md").is_file() and (out / "tables" / "synth-mosi__fixed_pattern__mae.tex").is_file()
    assert not (out / "figures").exists() and not list(out.glob("tables/*.csv"))


@pytest.mark.parametrize("test", ["randomization", "bootstrap"])
def test_report_command_with_a_per_sample_test(run_dir: Path, tmp_path: Path, test: str) -> None:
    out = tmp_path / "rep"
    res = cli.invoke(app, ["report", str(run_dir), "--metric", "mae", "--allow-partial", "--test", test,
                           "--figures", "none", "--out", str(out)])
    assert res.exit_code == 0, res.output
    name = {"randomization": "seed-stratified approximate randomization test",
            "bootstrap": "seed-pooled paired bootstrap test"}[test]
    assert f"two-sided {name} over test samples (1000 " in res.output.replace("\n", " ")
    assert f"Significance: two-sided {name} over test samples" in (out / "report.md").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--metric", "acc8"], "Unknown metric 'acc8'. Did you mean 'acc7'"),
    (["--metric", "wa"], "no records for metric(s) ['wa']; available: synth-mosi: acc2_has0, acc2_non0"),
    (["--reference", "mult"], "reference method 'mult' is not in the results; methods: test_plugin_mean, "
                              "vanilla_fusion (or --reference none"),
    (["--format", "html"], "unknown format(s) ['html']; valid: md, latex, csv"),
    (["--test", "ztest"], "unknown test 'ztest'; valid: ttest, wilcoxon, randomization, bootstrap"),
    (["--test", "randomization", "--all-pairs"], "--all-pairs tests over seeds"),
    (["--test", "bootstrap", "--all-pairs"], "--all-pairs tests over seeds"),
    (["--correction", "bonferroni"], "unknown correction 'bonferroni'; valid: holm, bh, none"),
])
def test_report_bad_input_is_one_line_error(run_dir: Path, args: list[str], message: str) -> None:
    res = cli.invoke(app, ["report", str(run_dir), "--allow-partial", *args])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and message in res.output.replace("\n", " ") and "Traceback" not in res.output


def test_rewriting_a_report_leaves_no_stale_files(run_dir: Path, tmp_path: Path) -> None:
    results = load_results([run_dir], allow_partial=True)
    out = tmp_path / "rep"
    write_report(results, ReportOptions(metrics=("mae",), formats=("md", "csv"), figures="none"), out)
    write_report(results, ReportOptions(metrics=("mae",), formats=("latex",), figures="none"), out)
    assert {p.suffix for p in (out / "tables").iterdir()} == {".tex"}
    with pytest.raises(ValueError, match="is not empty and holds no report.md"):
        write_report(results, ReportOptions(metrics=("mae",), figures="none"), run_dir)


def test_report_errors_without_records_or_out(run_dir: Path, tmp_path: Path) -> None:
    res = cli.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not a mibench run directory" in res.output
    res = cli.invoke(app, ["report", str(run_dir), str(run_dir), "--allow-partial"])
    assert res.exit_code == 2 and "pass --out DIR" in res.output


def test_no_reference_means_no_marks(run_dir: Path) -> None:
    tables = build_tables(load_results([run_dir], allow_partial=True),
                          ReportOptions(metrics=("mae",), stats=StatsOptions(reference=None)))
    assert all((t.cells["mark"] == "").all() for t in tables)
    assert "No significance marks: no reference method was chosen." in tables[0].caption
