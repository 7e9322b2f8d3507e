"""Units in worker processes (spawned, so CUDA and threads stay sane) that each load the data once, run the units
they are handed and send the results back; the driver's process alone writes the run directory.

Workers end with their parent (even when it is SIGKILLed) and import every module that registered what the run
uses, so a plugin's method trains in a worker as in the parent. They report ``started`` and ``epoch`` events
through a queue, so the display shows the cells that are really executing, not the ones queued in the pool.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from harness import builtins
from harness.config import RunConfig
from harness.executors.base import OnResult
from harness.plan import Cell, Loaded, WorkUnit, prepare_process
from harness.work import CellResult, Progress, on_device, run_unit

_WORKER: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    """Worker side: end this process when the runner that started it is gone (killed, even with SIGKILL), instead
    of training on as an orphan whose results nobody would store."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class QueueEvents:
    """Worker side of the progress events: put them on the driver's queue, never block on it."""

    def __init__(self, q: Any) -> None:
        self.q = q

    def started(self, cell: Cell) -> None:
        self.q.put(("started", cell, 0, 0))

    def epoch(self, cell: Cell, epoch: int, total: int) -> None:
        self.q.put(("epoch", cell, epoch, total))


def _worker_init(config: RunConfig, parent: int, modules: list[str], events: Any) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    builtins.load()
    for module in modules:
        importlib.import_module(module)
    loaded = prepare_process(config)
    _WORKER.update(loaded=loaded, datasets=on_device(loaded), events=QueueEvents(events))


def _worker_unit(unit: WorkUnit, execution: dict[str, Any]) -> list[CellResult]:
    return run_unit(unit, _WORKER["loaded"], _WORKER["datasets"], _WORKER["events"], execution)


def drain(events: Any, progress: Progress | None) -> None:
    """Driver side: forward every queued event to ``progress``."""
    while True:
        try:
            kind, cell, epoch, total = events.get_nowait()
        except queue.Empty:
            return
        if progress is None:
            continue
        if kind == "started":
            progress.started(cell)
        else:
            progress.epoch(cell, epoch, total)


class ProcessExecutor:
    """``workers`` processes; ``modules`` are what each must import (``base.registering_modules``)."""

    name = "process"

    def __init__(self, workers: int, modules: list[str]) -> None:
        self.workers, self.modules = workers, modules

    def execution(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers}

    def execute(self, loaded: Loaded, units: list[WorkUnit], on_result: OnResult,
                progress: Progress | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        pool = ProcessPoolExecutor(min(self.workers, len(units)), mp_context=ctx, initializer=_worker_init,
                                   initargs=(loaded.plan.config, os.getpid(), self.modules, events))
        try:
            pending = {pool.submit(_worker_unit, unit, self.execution()): unit for unit in units}
            while pending:
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                drain(events, progress)
                for fut in finished:
                    del pending[fut]
                    for result in fut.result():
                        on_result(result)
        except BaseException:
            # The driver cannot go on (e.g. a full disk while storing): do not train the queued units first.
            _stop(pool)
            raise
        pool.shutdown()
        drain(events, progress)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and end the workers now (their current units would be stored by nobody)."""
    processes = list(getattr(pool, "_processes", {}).values())  # stable since Python 3.2, no public accessor
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
