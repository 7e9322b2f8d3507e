"""Parallel execution of a run's cells: worker processes (spawned, so CUDA and threads stay sane) that each load
the data once, train the cells they are handed and send the results back; the runner's process alone writes the
run directory. Workers end with their parent, and import every module that registered what the run uses, so a
method registered by a plugin module trains in a worker as it would in the parent.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from corruptions.spec import FeatureStats
from harness import builtins, runner
from harness.config import RunConfig
from harness.data import Dataset
from harness.registry import CORRUPTIONS, DATASETS, METHODS, METRICS, PROTOCOLS
from harness.runner import Cell, Plan, Progress, Summary
from harness.store import RunStore, now

_WORKER: tuple[Plan, dict[str, Dataset], dict[str, FeatureStats]] | None = None


def _exit_with_parent(parent: int) -> None:
    """Worker side: end this process when the runner that started it is gone (killed, even with SIGKILL), instead
    of training on as an orphan whose results nobody would store."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def registering_modules(plan: Plan) -> list[str] | None:
    """Modules a fresh worker process must import to see everything this process registered (the run's
    methods, datasets and protocols, every metric and corruption), or None if some entry was registered in a
    way a fresh process cannot repeat (inside a function, or by ``__main__``)."""
    entries = [(METHODS, n) for n in plan.methods] + [(DATASETS, n) for n in plan.datasets]
    entries += [(PROTOCOLS, p.name) for p in plan.protocols]
    entries += [(METRICS, n) for n, _ in METRICS.entries()] + [(CORRUPTIONS, n) for n, _ in CORRUPTIONS.entries()]
    origins = [registry.origin(name) for registry, name in entries]
    if any(o is None for o in origins):
        return None
    return sorted(set(origins))


def _worker_init(config: RunConfig, parent: int, modules: list[str]) -> None:
    global _WORKER
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    builtins.load()
    for module in modules:
        importlib.import_module(module)
    plan, datasets, stats = runner.prepare_process(config)
    _WORKER = plan, {n: d.to(plan.device) for n, d in datasets.items()}, stats


def _worker_cell(cell: Cell):
    plan, datasets, stats = _WORKER
    return runner.attempt(cell, plan, datasets[cell.dataset], stats[cell.dataset], None)


def run_parallel(plan: Plan, todo: list[Cell], workers: int, store: RunStore, summary: Summary,
                 progress: Progress | None, code: dict[str, Any], modules: list[str]) -> None:
    """Cells in worker processes; this process alone writes the store, as results arrive."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_worker_init,
                             initargs=(plan.config, os.getpid(), modules)) as pool:
        pending = {}
        for cell in todo:  # queued until its worker's result arrives; anything not done is redone on resume
            store.mark(cell.id, "queued", queued_at=now())
            pending[pool.submit(_worker_cell, cell)] = cell
        while pending:
            if progress:
                progress.running([c for f, c in pending.items() if f.running()])
            finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in finished:
                del pending[fut]
                runner.store_result(store, summary, fut.result(), progress, code)
