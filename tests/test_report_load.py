"""Reading results for reports (reports.load): the paper column from method cards, the merging rules of several
run directories, partial and empty runs, mask draws averaged per training seed, curves a summary cannot use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from records import run_record as record

from reports.captions import describe
from reports.figures import make_figures
from reports.load import load_results
from reports.render import to_markdown
from reports.report import ReportOptions, build_tables
from reports.tables import StatsOptions, build_table
from reports.views import condition_view, metric_view, with_reported


def test_paper_column_from_the_method_card() -> None:
    rec = pd.DataFrame([record(m, s, c, v + 0.01 * s * (m == "other")) for m, v in (("vanilla_fusion", 0.7),
                        ("other", 0.8)) for s in (0, 1) for c in ("full", "text")])
    view, reported = with_reported(metric_view(rec, "mosi", ["acc2_non0"]), ["vanilla_fusion", "other"])
    assert [c.label for c in view.columns] == ["acc2_non0", "acc2_non0 (paper)"]
    assert reported == {("vanilla_fusion", "acc2_non0", "acc2_non0"): 0.7863}
    table = build_table("t", "mosi", view.title, view.values, view.columns, StatsOptions(), reported=reported)
    md = to_markdown(table, caption=False)
    assert "78.6" in md and md.splitlines()[3].rstrip().endswith("– |")  # 'other' has no card value
    view, reported = with_reported(condition_view(rec, "mosi", "fixed_pattern", ["acc2_non0"]), ["other"])
    assert not reported and not any(c.reported for c in view.columns)


def write_run(root: Path, rows: list[dict], reasons: list[str] | None = None, preset: str = "small") -> Path:
    root.mkdir(parents=True)
    meta = {"cells": {r["cell"]: {"status": "done"} for r in rows},
            "datasets": {"mosi": {"spec": {"task": "regression"}, "provenance": {"preset": preset}, "sizes": {}}},
            "reportable": {"ok": not reasons, "reasons": reasons or []}}
    (root / "run.json").write_text(json.dumps(meta))
    (root / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_merging_rules(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [record("m1", 0, "full", 0.7), record("m1", 1, "full", 0.72)])
    b = write_run(tmp_path / "b", [record("m1", 1, "full", 0.75), record("m2", 0, "full", 0.8)])
    merged = load_results([a, b])
    assert len(merged.records) == 3 and not merged.partial
    assert merged.records.set_index(["method", "seed"]).loc[("m1", 1), "value"] == 0.72  # first run wins
    assert "1 record(s) of" in merged.notes[0] and "the run given first wins" in merged.notes[0]
    c = write_run(tmp_path / "c", [record("m1", 1, "full", 0.75, digest="h2")])
    with pytest.raises(ValueError, match="different protocol definitions in .*a \\(h1\\), .*c \\(h2\\)"):
        load_results([a, c])
    d = write_run(tmp_path / "d", [record("m3", 0, "full", 0.75, digest="h2")])
    with pytest.raises(ValueError, match="protocol 'fixed_pattern' on 'mosi' has several definitions"):
        load_results([a, d])
    e = write_run(tmp_path / "e", [record("m3", 0, "full", 0.75)], preset="tiny")
    with pytest.raises(ValueError, match="dataset 'mosi' differs between .*provenance differ"):
        load_results([a, e])
    with pytest.raises(ValueError, match="given twice"):
        load_results([a, a])


def test_partial_and_empty_runs(tmp_path: Path) -> None:
    p = write_run(tmp_path / "p", [record("m1", 0, "full", 0.7)], reasons=["dataset mosi uses the preset 'tiny'"])
    with pytest.raises(ValueError, match="not reportable: dataset mosi uses the preset 'tiny'. Pass --allow-partial"):
        load_results([p])
    assert load_results([p], allow_partial=True).partial
    empty = write_run(tmp_path / "empty", [])
    with pytest.raises(ValueError, match="holds no records yet \\(no cells\\)"):
        load_results([empty])


def curve_rows(protocol: str, names: list[str], severity: float | None, value: float) -> list[dict]:
    return [{**record(m, s, name, value + 0.01 * s + 0.02 * i), "protocol": protocol, "severity": severity,
             "curve": protocol} for m in ("vanilla_fusion", "other") for s in (0, 1) for i, name in enumerate(names)]


PATTERNS = [record(m, s, c, 0.7 + 0.01 * s + (0.05 + 0.01 * s) * (m == "other")) for m in ("vanilla_fusion", "other")
            for s in (0, 1) for c in ("full", "text")]


def test_mask_draws_are_averaged_per_training_seed(tmp_path: Path) -> None:
    rows = PATTERNS + curve_rows("rate", ["r=0.5/mask=0", "r=0.5/mask=1"], 0.5, 0.6)
    results = load_results([write_run(tmp_path / "r", rows)])
    tables = build_tables(results, ReportOptions(metrics=("acc2_non0",)))
    assert [t.key for t in tables] == ["mosi__overview", "mosi__fixed_pattern__acc2_non0", "mosi__rate__acc2_non0",
                                       "mosi__robustness__acc2_non0", "mosi__robustness__rate__acc2_non0"]
    cell = tables[2].cells.loc[("other", "r=0.5", "acc2_non0")]
    assert cell["mean"] == pytest.approx(np.mean([0.61, 0.62])) and cell["n"] == 2  # draws 0.60/0.62, 0.61/0.63
    assert "mean over its 2 draws" in describe(tables[2], StatsOptions(), [("rate", 1, "h")], [])
    auc = tables[4].cells.loc[("other", "auc:rate", "acc2_non0")]["mean"]
    assert auc == pytest.approx(np.mean([(0.75 + 0.61) / 2, (0.77 + 0.62) / 2]))  # clean at 0, the mean at 0.5


def test_a_curve_the_summaries_cannot_use_costs_only_the_summary(tmp_path: Path) -> None:
    rows = PATTERNS + curve_rows("rate", ["r=?"], None, 0.6)  # a curve point without a severity
    results = load_results([write_run(tmp_path / "r", rows)])
    tables = build_tables(results, ReportOptions(metrics=("acc2_non0",)))
    assert [t.key for t in tables] == ["mosi__overview", "mosi__fixed_pattern__acc2_non0", "mosi__rate__acc2_non0",
                                       "mosi__robustness__acc2_non0"]
    assert "no robustness summary for mosi: curve 'rate' needs one finite severity" in tables[-1].notes[0]
    assert "mean (incomplete)" in [c.label for c in tables[1].columns]
    figures = make_figures(results.records, {"mosi": ["acc2_non0"]}, tmp_path / "figures")
    assert [f.kind for f in figures] == ["heatmap", "drop"]  # the broken curve is not drawn


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module that is not a docstring, with its line."""
    import ast

    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_method_is_named_in_harness_or_reports_code() -> None:
    from harness.registry import METHODS

    names = {name for name, _ in METHODS.entries()}
    root = Path(__file__).resolve().parent.parent
    found = [f"{path.relative_to(root)}:{line}: {value!r}" for package in ("harness", "reports")
             for path in sorted((root / package).rglob("*.py")) for line, value in _string_literals(path)
             if value in names]
    assert not found, "methods are declared (cards, run.json), never named in code: " + "; ".join(found)


def small_run(root: Path, reference: str | None, **kw) -> Path:
    from fake_run import write_fake_run

    return write_fake_run(root, ("vanilla_fusion", "modality_dropout", "mmin"), ("fixed_pattern",),
                          datasets=("synth-mosi",), reference=reference, **kw)


def test_the_reference_is_the_one_the_run_declares(tmp_path: Path) -> None:
    from reports.report import resolve_reference

    declared = load_results([small_run(tmp_path / "a", "modality_dropout")])
    assert resolve_reference(declared) == ("modality_dropout", None)
    assert resolve_reference(declared, "mmin") == ("mmin", None)
    assert resolve_reference(declared, "none") == (None, None)
    ref, note = resolve_reference(load_results([small_run(tmp_path / "b", None)]))
    assert ref is None and "no reference method is declared in run.json" in note
    other = load_results([small_run(tmp_path / "a2", "mmin"), small_run(tmp_path / "c", "vanilla_fusion")])
    with pytest.raises(ValueError, match="declare different reference methods \\(mmin, vanilla_fusion\\)"):
        resolve_reference(other)
    absent = load_results([small_run(tmp_path / "d", "modal_immune")])
    assert resolve_reference(absent)[0] is None and "modal_immune has no results here" in resolve_reference(absent)[1]


def test_method_table_and_selection_come_from_run_json(tmp_path: Path) -> None:
    from reports.methods import cell_frame, method_table, to_csv
    from reports.report import resolve_reference, write_report

    results = load_results([small_run(tmp_path / "a", "vanilla_fusion", policy="incomplete")])
    table = method_table(cell_frame(results), "synth-mosi", "synth-mosi__methods")
    frame = table.frame.set_index("method")
    assert frame.loc["mmin", "n_parameters"] == 98369 + 2000 and frame.loc["mmin", "epochs_run"] == 21.0
    assert frame.loc["modality_dropout", "train_time_s"] == pytest.approx(3.1)  # mean over seeds 0, 1, 2
    assert frame.loc["mmin", "backbone"] == "hidden 128" and frame.loc["vanilla_fusion", "backbone"] == "hidden 64"
    assert table.common["seq_encoder"] == "lstm" and "hidden" not in table.common
    assert "checkpoints selected on validation MAE, the mean over incomplete modality patterns" in table.caption
    assert pd.read_csv(__import__("io").StringIO(to_csv(table))).shape[0] == 3
    reference = StatsOptions(reference=resolve_reference(results)[0])
    tables, index = write_report(results, ReportOptions(stats=reference), tmp_path / "rep")
    assert "selected on validation MAE, the mean over incomplete modality patterns" in tables[0].caption
    assert "### Methods: parameters, backbone" in index.read_text()
    assert all((tmp_path / "rep" / "tables" / f"synth-mosi__methods{s}").is_file() for s in (".md", ".tex", ".csv"))
    assert "vs Vanilla fusion" in (tmp_path / "rep" / "tables" / "synth-mosi__fixed_pattern__mae.tex").read_text()


def test_older_run_json_without_the_new_keys_still_reports(tmp_path: Path) -> None:
    from reports.report import method_tables, resolve_reference

    rows = [record(m, s, c, 0.7 + 0.01 * s) for m in ("a", "b") for s in (0, 1) for c in ("full", "text")]
    results = load_results([write_run(tmp_path / "old", rows)])
    assert resolve_reference(results)[0] is None
    (table,) = method_tables(results)
    assert table.frame["n_parameters"].isna().all() and (table.frame["backbone"] == "–").all()
    assert "did not record backbones" in table.caption and "checkpoints selected on the validation split" in \
        build_tables(results, ReportOptions(metrics=("acc2_non0",)))[0].caption
