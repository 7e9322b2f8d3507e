"""Running and storing units of work: the functions every executor calls, and their typed result.

A :class:`~harness.plan.WorkUnit` runs in whatever process its executor chose (:func:`run_unit`); what comes back
is one :class:`CellResult` per cell, a plain picklable value. The driver alone writes the run directory
(:func:`store_result`), so results from worker processes or cluster nodes arrive the same way as local ones.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from corruptions.spec import FeatureStats
from harness.data import Dataset
from harness.evaluate import evaluate, expand, prediction_arrays, to_records
from harness.plan import Cell, Loaded, Plan, WorkUnit
from harness.registry import METHODS
from harness.seeding import seed_everything, stable_seed, torch_generator
from harness.store import RunStore
from harness.training import FitContext

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What executors report while a run goes on; the CLI draws its display from it (:mod:`harness.progress`).

    ``start`` is sent once, before any cell runs: the plan's cell count, how many are already done, the run
    directory and the cells still to do. ``started`` is sent when a cell really begins executing (not when it
    is queued), ``epoch`` after each of its training epochs (``total`` is the epoch budget), ``finished`` once
    its result is stored.
    """

    def start(self, total: int, done: int, out: Path, todo: Sequence[Cell]) -> None: ...
    def started(self, cell: Cell) -> None: ...
    def epoch(self, cell: Cell, epoch: int, total: int) -> None: ...
    def finished(self, cell: Cell, status: str, seconds: float) -> None: ...


class Events(Protocol):
    """The part of :class:`Progress` a worker can send from where a unit runs (possibly another process)."""

    def started(self, cell: Cell) -> None: ...
    def epoch(self, cell: Cell, epoch: int, total: int) -> None: ...


@dataclass
class CellResult:
    """What running one cell gave: its records, predictions and run.json info, or the error it raised.

    ``info`` holds the fit (selected epoch, history), diagnostics, timings, parameter count and ``execution``
    (executor, group size, compile flag: how it ran, which is not part of the run identity).
    """

    cell: Cell
    records: list[dict[str, Any]] = field(default_factory=list)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def seconds(self) -> float:
        return float(self.info.get("train_time_s", 0.0)) + float(self.info.get("eval_time_s", 0.0))


def cell_seed(cell: Cell) -> int:
    return stable_seed("cell", cell.dataset, cell.method, cell.seed)


def run_cell(cell: Cell, data: Dataset, plan: Plan, stats: FeatureStats, events: Events | None = None) -> CellResult:
    """Train one method on one dataset for one seed, evaluate under every condition; return what to store."""
    seed = cell_seed(cell)
    seed_everything(seed)
    cls, cfg = METHODS.get(cell.method), plan.method_configs[cell.method]
    model = cls(data.spec, cfg).to(plan.device)
    on_epoch = (lambda e, t: events.epoch(cell, e, t)) if events else (lambda e, t: None)
    ctx = FitContext(plan.device, torch_generator(seed, plan.device), seed, on_epoch=on_epoch)
    t0 = time.perf_counter()
    fit = model.fit(data, ctx)
    t1 = time.perf_counter()
    results = evaluate(model, data.test, expand(plan.protocols_for(data)[0], data.spec, stats))
    target = data.test.y.cpu().numpy()
    base = {"dataset": cell.dataset, "method": cell.method, "seed": cell.seed}
    records = to_records(results, target, data.spec, base)
    preds = prediction_arrays(results, target, np.asarray(data.ids.get("test", np.arange(len(target)))))
    info = {"cell_seed": seed, "fit": dataclasses.asdict(fit), "diagnostics": model.diagnostics(),
            "train_time_s": t1 - t0, "eval_time_s": time.perf_counter() - t1, "device": str(plan.device),
            "n_parameters": sum(p.numel() for p in model.parameters())}
    return CellResult(cell, records, preds, info)


def attempt(cell: Cell, data: Dataset, plan: Plan, stats: FeatureStats, events: Events | None) -> CellResult:
    """:func:`run_cell`, with a failing cell reported as a result (never raised), so the sweep goes on."""
    if events:
        events.started(cell)
    try:
        return run_cell(cell, data, plan, stats, events)
    except Exception as exc:  # a failing cell is recorded and the sweep goes on
        return CellResult(cell, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())


def run_unit(unit: WorkUnit, loaded: Loaded, datasets: Mapping[str, Dataset], events: Events | None = None,
             execution: Mapping[str, Any] | None = None) -> list[CellResult]:
    """Run every cell of ``unit`` on ``datasets`` (already on the plan's device); one result per cell, in order."""
    data, stats = datasets[unit.dataset], loaded.stats[unit.dataset]
    results = [attempt(cell, data, loaded.plan, stats, events) for cell in unit.cells]
    for r in results:
        r.info["execution"] = {**(execution or {}), "group_size": len(unit.cells)}
    return results


def store_result(store: RunStore, result: CellResult, code: Mapping[str, Any]) -> None:
    """Persist one cell's result (a done cell, or a failed one with its error) with the commit that trained it."""
    if result.ok:
        store.write_cell(result.cell.id, result.records, result.predictions, git=dict(code), **result.info)
    else:
        log.error("cell %s failed: %s", result.cell.id, result.error)
        store.mark(result.cell.id, "failed", error=result.error, traceback=result.traceback, git=dict(code),
                   **{k: v for k, v in result.info.items() if k == "execution"})


def on_device(loaded: Loaded) -> dict[str, Dataset]:
    """The loaded datasets moved to the plan's device (once per process)."""
    return {n: d.to(loaded.plan.device) for n, d in loaded.datasets.items()}

