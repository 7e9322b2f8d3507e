"""The reportability rule of harness.runner and how reports.load reads it (no training here)."""

from __future__ import annotations

from pathlib import Path

from harness import runner
from harness.config import RunConfig
from harness.plan import Plan
from harness.store import RunStore
from reports.load import partial_reasons


def _plan_and_store(tmp_path: Path, preset: str = "small", options: dict | None = None,
                    statuses: tuple[str, ...] = ("done", "done")) -> tuple[Plan, RunStore]:
    cfg = RunConfig(methods=("vanilla_fusion",), datasets=("synth-mosi",), seeds=(0, 1), preset=preset,
                    method_options=options or {}, out=str(tmp_path / "r"), device="cpu")
    plan = runner.prepare(cfg)
    store = RunStore(tmp_path / "r")
    store.meta = {"cells": {c.id: {"status": s} for c, s in zip(plan.cells, statuses, strict=True)},
                  "datasets": {"synth-mosi": {"provenance": {"preset": preset}}}}
    return plan, store


def test_a_complete_run_at_default_budget_is_reportable(tmp_path: Path) -> None:
    plan, store = _plan_and_store(tmp_path)
    assert runner.reportability(plan, store) == {"ok": True, "reasons": []}


def test_smoke_preset_short_training_and_unfinished_cells_are_named(tmp_path: Path) -> None:
    plan, store = _plan_and_store(tmp_path, preset="tiny", options={"*": {"epochs": 2}},
                                  statuses=("done", "failed"))
    mark = runner.reportability(plan, store)
    assert not mark["ok"]
    assert mark["reasons"] == [
        "1 of 2 cells not done: synth-mosi__vanilla_fusion__seed1 (failed)",
        "dataset synth-mosi uses the smoke-test preset 'tiny'",
        "method vanilla_fusion trained for epochs=2, below its default 30",
    ]
    plan, store = _plan_and_store(tmp_path, options={"*": {"epochs": 60}})
    assert runner.reportability(plan, store)["ok"], "more epochs than the default is fine"


def test_reports_treat_a_missing_mark_as_unfinished() -> None:
    assert partial_reasons({"reportable": {"ok": True, "reasons": []}}) == []
    assert partial_reasons({"reportable": {"ok": False, "reasons": ["x"]}}) == ["x"]
    reasons = partial_reasons({"cells": {"a": {"status": "done"}, "b": {"status": "running"}}})
    assert "has not finished" in reasons[0] and reasons[1] == "1 cell(s) not done: b"
