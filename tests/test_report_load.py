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
