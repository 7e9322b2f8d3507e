"""The runner: plan a run (:mod:`harness.plan`), open its store, hand the units still to do to an executor
(:mod:`harness.executors`) and store each result as it arrives; this process is the only writer.

Everything the user named is validated by :func:`harness.plan.prepare` before any training starts (unknown
names, method options, devices, protocols that do not fit a dataset). A cell that raises is recorded as failed
with its error and the sweep goes on; finished cells are skipped when the same command runs again.

Reportability (``run.json`` key ``reportable``, written when a run ends, removed while it runs): a run's
numbers may go into a paper table only if

1. every planned cell (dataset x method x seed) is ``done`` - none failed, none unfinished;
2. no dataset was built with a smoke-test preset (:data:`SMOKE_PRESETS`, i.e. ``tiny``);
3. no method was trained for fewer ``epochs`` than the default of its backbone mode (the shared backbone's, or
   its paper's; a ``--set epochs=2`` smoke run).

Otherwise ``reportable = {"ok": false, "reasons": [...]}`` and ``mibench report`` refuses the run unless
``--allow-partial`` is given, in which case every caption says the run is partial.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import builtins
from harness.config import RunConfig, method_config
from harness.executors import check, choose, stack_size
from harness.lock import RunLock
from harness.plan import Cell, Plan, check_metrics, group_cells, prepare, prepare_process
from harness.provenance import identity, run_meta
from harness.registry import METHODS, METRICS
from harness.stacking import stackable
from harness.store import RunStore, clear_dir, now
from harness.work import CellResult, Progress, store_result

log = logging.getLogger(__name__)
SMOKE_PRESETS = ("tiny",)
__all__ = ["SMOKE_PRESETS", "Summary", "prepare", "reportability", "run"]


@dataclass
class Summary:
    out: Path
    done: list[str]
    failed: dict[str, str]
    skipped: list[str]


class Driver:
    """The driver's side of execution: stores each result as it arrives and keeps run.json's cell status
    (queued -> running -> done/failed) in step with the executor's events, then forwards them to ``progress``."""

    def __init__(self, store: RunStore, summary: Summary, progress: Progress | None, code: dict[str, Any]) -> None:
        self.store, self.summary, self.progress, self.code = store, summary, progress, code

    def start(self, total: int, done: int, out: Path, todo: list[Cell]) -> None:
        if self.progress:
            self.progress.start(total, done, out, todo)

    def over(self, cell: Cell) -> bool:
        """An event from a worker can arrive after its cell's result was stored: such a cell is never demoted."""
        return self.store.cell_status(cell.id) in ("done", "failed")

    def started(self, cell: Cell) -> None:
        if self.over(cell):
            return
        self.store.mark(cell.id, "running", started_at=now())
        if self.progress:
            self.progress.started(cell)

    def epoch(self, cell: Cell, epoch: int, total: int) -> None:
        if self.progress and not self.over(cell):
            self.progress.epoch(cell, epoch, total)

    def finished(self, cell: Cell, status: str, seconds: float) -> None:
        if self.progress:
            self.progress.finished(cell, status, seconds)

    def on_result(self, result: CellResult) -> None:
        if self.store.is_done(result.cell.id):  # e.g. a retried task whose first attempt did report
            log.warning("ignoring a second result for cell %s, which is already stored", result.cell.id)
            return
        store_result(self.store, result, self.code)
        if result.ok:
            self.summary.done.append(result.cell.id)
        else:
            self.summary.failed[result.cell.id] = result.error or ""
        self.finished(result.cell, self.store.cell_status(result.cell.id) or "failed", result.seconds)


def reportability(plan: Plan, store: RunStore) -> dict[str, Any]:
    """The ``reportable`` mark of ``run.json``: ``{"ok": bool, "reasons": [str, ...]}`` (rule: module docstring)."""
    reasons: list[str] = []
    not_done = [f"{c.id} ({store.cell_status(c.id) or 'not started'})" for c in plan.cells if not store.is_done(c.id)]
    if not_done:
        shown = ", ".join(not_done[:5]) + (f" and {len(not_done) - 5} more" if len(not_done) > 5 else "")
        reasons.append(f"{len(not_done)} of {len(plan.cells)} cells not done: {shown}")
    for name in plan.datasets:
        preset = store.meta["datasets"][name]["provenance"].get("preset")
        if preset in SMOKE_PRESETS:
            reasons.append(f"dataset {name} uses the smoke-test preset {preset!r}")
    for method, cfg in plan.method_configs.items():
        default = method_config(method, {}, cfg.backbone).epochs
        if cfg.epochs < default:
            reasons.append(f"method {method} trained for epochs={cfg.epochs}, below its default {default}")
    return {"ok": not reasons, "reasons": reasons}


def run(config: RunConfig, progress: Progress | None = None, overwrite: bool = False,
        table_metric: str | None = None) -> Summary:
    """Run every cell of ``config`` (skipping finished ones) and return what happened.

    The plan's cells are grouped into units of work and handed to the executor that ``config.executor`` selects
    (:func:`harness.executors.choose`); this process stays the only writer of the run directory.
    ``table_metric``: the metric of the table the caller prints afterwards, checked up front.
    """
    builtins.load()
    if table_metric is not None:
        METRICS.get(table_metric)  # an unknown name is answered before any data is loaded
    plan = prepare(config)  # every name and option checked before the directory is touched
    check(plan)
    with RunLock(plan.out):  # a second driver is refused here, before it loads anything
        return _run_locked(config, progress, overwrite, table_metric)


def _run_locked(config: RunConfig, progress: Progress | None, overwrite: bool, table_metric: str | None) -> Summary:
    loaded = prepare_process(config)
    plan = loaded.plan
    check_metrics(plan, loaded.datasets, table_metric)
    ident = identity(plan, loaded.datasets)
    if overwrite and (plan.out / "run.json").exists():
        clear_dir(plan.out)  # everything but the lock, which this driver holds
    # A run made before data fingerprints were stored cannot be checked against the data: it is taken as is.
    defaults = {**RunConfig().identity(), "method_options": {}, "data": ident["data"]}
    meta = run_meta(plan, loaded.datasets)
    store = RunStore.open(plan.out, ident, meta, defaults=defaults)
    store.meta.pop("reportable", None)  # re-decided when this run ends; absent = unfinished
    summary = Summary(plan.out, [], {}, [c.id for c in plan.cells if store.is_done(c.id)])
    todo = [c for c in plan.cells if not store.is_done(c.id)]
    if progress:
        progress.start(len(plan.cells), len(summary.skipped), plan.out, todo)
    stacks = {m: stackable(METHODS.get(m)) for m in plan.methods}
    units = group_cells(plan, todo, stack=stack_size(plan), stackable=stacks)
    executor = choose(plan, units)
    code = meta["git"]  # the code that trains this session's cells, recorded per cell
    store.mark_many([c.id for c in todo], "queued", queued_at=now())  # not done when stopped = redone on resume
    driver = Driver(store, summary, progress, code)
    executor.execute(loaded, units, driver.on_result, driver)
    store.meta["finished_at"] = now()
    store.meta["reportable"] = reportability(plan, store)
    store.save_meta()
    return summary
