"""Units in worker processes (spawned, so CUDA and threads stay sane) that receive the driver's loaded data through
shared memory (never loading or regenerating it again), run the units they are handed and send the results back;
the driver's process alone writes the run directory.

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
from collections import deque
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


def _worker_init(config: RunConfig, parent: int, modules: list[str], events: Any, shared: Any) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    builtins.load()
    for module in modules:
        importlib.import_module(module)
    loaded = prepare_process(config, shared)  # the driver's data, through shared memory: loaded once per run
    _WORKER.update(loaded=loaded, datasets=on_device(loaded), events=QueueEvents(events))
    events.put(("ready", None, os.getpid(), 0))


def _warm_up() -> None:
    """A no-op task: submitting one per worker makes the pool start its workers right away."""
    return None


def _worker_unit(unit: WorkUnit, execution: dict[str, Any]) -> list[CellResult]:
    return run_unit(unit, _WORKER["loaded"], _WORKER["datasets"], _WORKER["events"], execution)


def drain(events: Any, progress: Progress | None) -> int:
    """Driver side: forward every queued event to ``progress``; return how many workers reported ready."""
    ready = 0
    while True:
        try:
            kind, cell, epoch, total = events.get_nowait()
        except queue.Empty:
            return ready
        if kind == "ready":
            ready += 1
        elif progress is None:
            continue
        elif kind == "started":
            progress.started(cell)
        else:
            progress.epoch(cell, epoch, total)


class ProcessExecutor:
    """``workers`` processes; ``modules`` are what each must import (``base.registering_modules``).

    ``driver_works``: the driver runs units itself whenever no started worker is free, with ``workers - 1`` worker
    processes beside it. Starting a worker (spawning Python, importing torch) takes seconds; meanwhile the driver
    is already training, so a short grid is never slower than a sequential run and a long one still uses every
    core. Units go to a worker only once it reported ready.
    """

    name = "process"

    def __init__(self, workers: int, modules: list[str], driver_works: bool = False) -> None:
        self.workers, self.modules, self.driver_works = workers, modules, driver_works

    def execution(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers}

    def execute(self, loaded: Loaded, units: list[WorkUnit], on_result: OnResult,
                progress: Progress | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        size = min(self.workers - (1 if self.driver_works else 0), len(units))
        todo, datasets = deque(units), on_device(loaded) if self.driver_works else None
        pool = ProcessPoolExecutor(max(1, size), mp_context=ctx, initializer=_worker_init,
                                   initargs=(loaded.plan.config, os.getpid(), self.modules, events,
                                             (loaded.datasets, loaded.stats)))
        try:
            warm = [pool.submit(_warm_up) for _ in range(size)]
            pending: dict[Any, WorkUnit] = {}
            ready = 0
            while todo or pending:
                ready += drain(events, progress)
                for fut in warm:
                    fut.result() if fut.done() else None  # a worker that failed to start raises here
                # two units per started worker: the next one is queued while the driver trains its own
                while todo and size and len(pending) < 2 * ready:
                    unit = todo.popleft()
                    pending[pool.submit(_worker_unit, unit, {**self.execution(), "in": "worker"})] = unit
                if todo and (self.driver_works or not size):
                    datasets = datasets if datasets is not None else on_device(loaded)
                    for result in run_unit(todo.popleft(), loaded, datasets, progress,
                                           {**self.execution(), "in": "driver"}):
                        on_result(result)
                    timeout = 0.0
                else:
                    timeout = 0.5
                finished, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED) if pending else (
                    [], time.sleep(timeout))
                ready += drain(events, progress)  # a finished unit's events come before its results
                for fut in finished:
                    del pending[fut]
                    for result in fut.result():
                        on_result(result)
        except BaseException:
            # The driver cannot go on (e.g. a full disk while storing): do not train the queued units first.
            _stop(pool)
            raise
        _stop(pool)  # nothing is pending: a worker still starting up (importing torch) is not waited for
        drain(events, progress)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and end the workers now: after a failure their current units would be stored by
    nobody, and after the last result a worker still starting up would only add its start-up time to the run."""
    processes = list(getattr(pool, "_processes", {}).values())  # stable since Python 3.2, no public accessor
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
