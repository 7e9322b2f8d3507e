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
import torch

from corruptions.spec import FeatureStats
from harness.data import Dataset
from harness.evaluate import evaluate, evaluate_members, expand, prediction_arrays, to_records
from harness.plan import Cell, Loaded, Plan, WorkUnit
from harness.registry import METHODS
from harness.seeding import seed_everything, stable_seed, torch_generator
from harness.stacking import fit_group, stackable
from harness.store import RunStore
from harness.training import FitContext, FitResult

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
    ctx = FitContext(plan.device, torch_generator(seed, plan.device), seed, on_epoch=on_epoch,
                     selection=plan.selection)
    t0 = time.perf_counter()
    fit = model.fit(data, ctx)
    t1 = time.perf_counter()
    results = evaluate(model, data.test, expand(plan.protocols_for(data)[0], data.spec, stats))
    target = data.test.y.cpu().numpy()
    base = {"dataset": cell.dataset, "method": cell.method, "seed": cell.seed}
    records = to_records(results, target, data.spec, base)
    preds = prediction_arrays(results, target, np.asarray(data.ids.get("test", np.arange(len(target)))))
    return CellResult(cell, records, preds, cell_info(seed, fit, model, cfg, plan, t1 - t0, time.perf_counter() - t1))


def cell_info(seed: int, fit: FitResult, model: Any, cfg: Any, plan: Plan, train_s: float,
              eval_s: float) -> dict[str, Any]:
    """What run.json records about a trained cell: seed, fit, diagnostics, timing, size, selection, backbone."""
    return {"cell_seed": seed, "fit": dataclasses.asdict(fit), "diagnostics": model.diagnostics(),
            "train_time_s": train_s, "eval_time_s": eval_s, "device": str(plan.device),
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "selection": {"policy": fit.selection_policy, "metric": fit.select_metric},
            "backbone": cfg.backbone_record(),
            "budget": {"epochs": cfg.epochs, "patience": cfg.patience, "batch_size": cfg.batch_size,
                       "epochs_run": fit.epochs_run,
                       "stages": {k: v["epochs_run"] for k, v in fit.extra.get("stages", {}).items()}}}


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
    """Run every cell of ``unit`` on ``datasets`` (already on the plan's device); one result per cell, in order.
    A seed group of a stackable method trains as one stacked computation (:func:`run_group`)."""
    data, stats = datasets[unit.dataset], loaded.stats[unit.dataset]
    execution = dict(execution or {})
    if len(unit.cells) > 1 and stackable(METHODS.get(unit.method)):
        results = run_group(unit, data, loaded.plan, stats, events, bool(execution.get("compile")))
        size = len(unit.cells)
    else:
        results = [attempt(cell, data, loaded.plan, stats, events) for cell in unit.cells]
        size = 1
    tf32 = loaded.plan.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    for r in results:
        r.info["execution"] = {**execution, "group_size": size, "tf32": bool(tf32)}
    return results


def run_group(unit: WorkUnit, data: Dataset, plan: Plan, stats: FeatureStats, events: Events | None,
              compile: bool = False) -> list[CellResult]:
    """Train a seed group as one stacked computation, evaluate all members in batched passes, and split the
    results back per cell (records, predictions and run.json info in the form of :func:`run_cell`). Each member
    is built and seeded exactly as its own cell would be; a member whose loss diverges fails alone."""
    cls, cfg = METHODS.get(unit.method), plan.method_configs[unit.method]
    models, ctxs = [], []
    for cell in unit.cells:
        if events:
            events.started(cell)
        seed = cell_seed(cell)
        seed_everything(seed)  # the initialisation of a separate run of this cell
        models.append(cls(data.spec, cfg).to(plan.device))
        on_epoch = (lambda e, t, c=cell: events.epoch(c, e, t)) if events else (lambda e, t: None)
        ctxs.append(FitContext(plan.device, torch_generator(seed, plan.device), seed, on_epoch=on_epoch,
                               selection=plan.selection))
    try:
        t0 = time.perf_counter()
        group, fits = fit_group(models, data, ctxs, compile=compile)
        t1 = time.perf_counter()
        pairs = expand(plan.protocols_for(data)[0], data.spec, stats)
        evaluated = evaluate_members(group.predict, len(models), data.test, pairs)
        t2 = time.perf_counter()
    except Exception as exc:  # the whole group failed (not one member's loss): every cell records the error
        error, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc()
        return [CellResult(cell, error=error, traceback=tb) for cell in unit.cells]
    target = data.test.y.cpu().numpy()
    ids = np.asarray(data.ids.get("test", np.arange(len(target))))
    out = []
    for cell, model, ctx, fit, results in zip(unit.cells, models, ctxs, fits, evaluated, strict=True):
        if isinstance(fit, str):
            out.append(CellResult(cell, error=f"NonFiniteLossError: {fit}"))
            continue
        base = {"dataset": cell.dataset, "method": cell.method, "seed": cell.seed}
        info = cell_info(ctx.seed, fit, model, cfg, plan, (t1 - t0) / len(models), (t2 - t1) / len(models))
        info["group_time_s"] = {"train": t1 - t0, "eval": t2 - t1}
        out.append(CellResult(cell, to_records(results, target, data.spec, base),
                              prediction_arrays(results, target, ids), info))
    return out


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

