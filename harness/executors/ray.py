"""Units of work on a Ray cluster (``--executor ray``): actors that each hold the data once and run the units
they are handed; results stream back to the driver, whose process alone writes the run directory.

Needs the ``ray`` extra (``pip install "mibench[ray]"``); :func:`harness.executors.choose` imports this module
only when ``--executor ray`` is asked for, so ``import harness`` never needs Ray. What runs where, how GPUs are
shared and how to attach to a cluster: ``docs/distributed.md``.

- Connecting: ``--address auto|HOST:PORT`` attaches to a running cluster; without it a local instance is
  started (and stopped at the end). A Ray already initialised in this process (tests) is used as it is.
- Workers: one actor per ``--threads`` CPUs (``--workers`` caps the count), each reserving ``--gpus-per-task``
  GPUs (fractions share one: 0.5 puts two workers on a GPU); an actor loads the data once and runs units one
  at a time, like an ``ActorPool`` member.
- Data: ``ray_data = "store"`` (default) puts the driver's datasets into the object store once and every worker
  reads them from there; ``"path"`` has every worker load them itself from the same paths (a shared
  filesystem). Either way a worker first compares its data digests, method options, protocol hashes and
  mibench version with the driver's (:func:`harness.provenance.worker_identity`) and refuses to train on any
  difference: the run stops with a one-line error naming the worker's host and what differs.
- Retries: a unit whose worker died (killed, out of memory, node lost) is run again on a fresh worker, up to
  ``--max-retries`` times; after that its cells are recorded as failed and the sweep goes on. The driver stores
  a cell's result once only, so a retry can never duplicate records.
- Progress: workers send ``started``/``epoch`` events to a small sink actor the driver polls, so the display
  is the same as a local run's.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

from corruptions.spec import FeatureStats
from harness import builtins
from harness.config import RunConfig
from harness.data import Dataset
from harness.executors.base import OnResult
from harness.plan import Cell, Loaded, WorkUnit, prepare, prepare_process, resolve_device
from harness.provenance import identity_diff, worker_identity
from harness.work import CellResult, Progress, on_device, run_unit

log = logging.getLogger(__name__)
POLL_S = 0.5


@dataclass(frozen=True)
class Refusal:
    """A worker's answer instead of results: its data or code differ from the driver's."""

    host: str
    pid: int
    differences: tuple[str, ...]

    def message(self) -> str:
        return (f"a Ray worker (host {self.host}, pid {self.pid}) refused to train: "
                f"{'; '.join(self.differences)}; every node must see the same data files and run the same mibench")


class Sink:
    """Collects progress events from every worker; the driver takes them in batches."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Cell, int, int]] = []

    def put(self, item: tuple[str, Cell, int, int]) -> None:
        self.items.append(item)

    def take(self) -> list[tuple[str, Cell, int, int]]:
        items, self.items = self.items, []
        return items


class SinkEvents:
    """Worker side of the progress events: fire and forget, never wait on the driver."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def started(self, cell: Cell) -> None:
        self.sink.put.remote(("started", cell, 0, 0))

    def epoch(self, cell: Cell, epoch: int, total: int) -> None:
        self.sink.put.remote(("epoch", cell, epoch, total))


class UnitWorker:
    """One Ray actor: loads (or receives) the data once, checks it against the driver's, then runs units."""

    def __init__(self, config: RunConfig, modules: list[str], expected: dict[str, Any],
                 datasets: dict[str, Dataset] | None, sink: Any, sys_path: list[str]) -> None:
        for entry in sys_path:  # the driver's import path (plugins next to a script), where it exists here
            if entry not in sys.path and os.path.isdir(entry):
                sys.path.append(entry)
        builtins.load()
        for module in modules:
            importlib.import_module(module)
        if datasets is None:
            self.loaded = prepare_process(config)
        else:
            torch.set_num_threads(config.threads)
            stats = {n: FeatureStats.from_batch(d.train) for n, d in datasets.items()}
            self.loaded = Loaded(prepare(config), datasets, stats)
        self.loaded.plan.device = resolve_device(config.device)  # this worker's own GPU (Ray sets what it sees)
        differences = identity_diff(worker_identity(self.loaded.plan, self.loaded.datasets), expected)
        self.refusal = Refusal(platform.node(), os.getpid(), tuple(differences)) if differences else None
        self.datasets = on_device(self.loaded) if self.refusal is None else {}
        self.events = SinkEvents(sink)

    def run(self, unit: WorkUnit, execution: dict[str, Any]) -> list[CellResult] | Refusal:
        if self.refusal is not None:
            return self.refusal
        results = run_unit(unit, self.loaded, self.datasets, self.events, execution)
        for r in results:
            r.info["execution"]["host"] = platform.node()
        return results


class RayExecutor:
    """Runs units on Ray actors (see the module docstring); ``modules`` as for the process executor."""

    name = "ray"

    def __init__(self, config: RunConfig, modules: list[str]) -> None:
        self.config, self.modules = config, modules

    def execution(self) -> dict[str, Any]:
        return {"executor": self.name, "address": self.config.ray_address or "local",
                "gpus_per_task": self.config.gpus_per_task, "ray_data": self.config.ray_data}

    def execute(self, loaded: Loaded, units: list[WorkUnit], on_result: OnResult,
                progress: Progress | None) -> None:
        if not units:
            return
        started_here = connect(self.config)
        try:
            _Run(self, loaded, on_result, progress).go(units)
        finally:
            if started_here:
                ray.shutdown()


def connect(config: RunConfig) -> bool:
    """Attach to ``config.ray_address`` or start a local instance; True if this call started one."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
             "configure_logging": True}
    if config.ray_address:
        try:
            ray.init(address=config.ray_address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ValueError(f"--address {config.ray_address}: cannot connect to a Ray cluster ({exc}); start one "
                             f"with 'ray start --head' or leave --address out for a local instance") from None
        return False
    ray.init(**quiet)
    return True


def worker_count(config: RunConfig, units: int) -> int:
    """``--workers``, else as many as the cluster's CPUs (``--threads`` each) or GPUs (``--gpus-per-task``) fit."""
    if config.workers:
        return min(config.workers, units)
    resources = ray.cluster_resources()
    fit = int(resources.get("CPU", 1) // config.threads)
    if config.gpus_per_task > 0:
        fit = min(fit, int(resources.get("GPU", 0) // config.gpus_per_task))
        if fit < 1:
            raise ValueError(f"--gpus-per-task {config.gpus_per_task}: the Ray cluster has "
                             f"{resources.get('GPU', 0):g} GPU(s), not enough for one worker")
    return max(1, min(fit, units))


class _Run:
    """One execution: the actors, the units in flight and the driver's side of retries."""

    def __init__(self, ex: RayExecutor, loaded: Loaded, on_result: OnResult, progress: Progress | None) -> None:
        self.ex, self.loaded, self.on_result, self.progress = ex, loaded, on_result, progress
        cfg = ex.config
        self.expected = worker_identity(loaded.plan, loaded.datasets)
        self.data = ray.put(loaded.datasets) if cfg.ray_data == "store" else None
        self.sink = ray.remote(num_cpus=0)(Sink).remote()
        self.actor_class = ray.remote(UnitWorker).options(num_cpus=cfg.threads, num_gpus=cfg.gpus_per_task,
                                                          max_restarts=0, max_task_retries=0)
        self.attempts: dict[str, int] = {}

    def new_actor(self) -> Any:
        return self.actor_class.remote(self.ex.config, self.ex.modules, self.expected, self.data, self.sink,
                                       list(sys.path))

    def go(self, units: list[WorkUnit]) -> None:
        todo = deque(units)
        idle = [self.new_actor() for _ in range(worker_count(self.ex.config, len(units)))]
        running: dict[Any, tuple[Any, WorkUnit]] = {}
        try:
            while todo or running:
                while idle and todo:
                    actor, unit = idle.pop(), todo.popleft()
                    self.attempts[unit.id] = self.attempts.get(unit.id, 0) + 1
                    running[actor.run.remote(unit, self.ex.execution())] = (actor, unit)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                self.forward_events()
                for ref in ready:
                    actor, unit = running.pop(ref)
                    idle.append(self.collect(ref, actor, unit, todo))
            self.forward_events()
        finally:
            for actor, _ in running.values():
                ray.kill(actor, no_restart=True)
            for actor in idle:
                ray.kill(actor, no_restart=True)
            ray.kill(self.sink, no_restart=True)

    def collect(self, ref: Any, actor: Any, unit: WorkUnit, todo: deque[WorkUnit]) -> Any:
        """Hand the unit's results to the driver, or retry/fail it; return the actor to use next."""
        try:
            results = ray.get(ref)
        except RayActorError as exc:  # the worker died: a fresh one takes its place
            self.forget(actor)
            retries = self.ex.config.max_retries
            if self.attempts[unit.id] <= retries:
                log.warning("the worker running %s died (%s); retrying it (attempt %d of %d)", unit.id,
                            type(exc).__name__, self.attempts[unit.id] + 1, retries + 1)
                todo.appendleft(unit)
            else:
                self.fail(unit, f"its Ray worker died {self.attempts[unit.id]} time(s) (killed, out of memory or "
                                f"a node lost); --max-retries {retries}")
            return self.new_actor()
        except RayTaskError as exc:  # run_unit reports cell errors itself: this is mibench's own failure
            self.fail(unit, f"the Ray task failed: {str(exc).splitlines()[0]}")
            return actor
        except RayError as exc:
            self.forget(actor)
            self.fail(unit, f"Ray could not run it ({type(exc).__name__}: {str(exc).splitlines()[0]})")
            return self.new_actor()
        if isinstance(results, Refusal):
            raise ValueError(results.message())
        for result in results:
            result.info["execution"]["attempts"] = self.attempts[unit.id]
            self.on_result(result)
        return actor

    def fail(self, unit: WorkUnit, why: str) -> None:
        log.error("%s failed: %s", unit.id, why)
        for cell in unit.cells:
            self.on_result(CellResult(cell, error=why, info={"execution": {**self.ex.execution(),
                                                                           "attempts": self.attempts[unit.id]}}))

    @staticmethod
    def forget(actor: Any) -> None:
        try:
            ray.kill(actor, no_restart=True)
        except (RayError, ValueError):
            pass

    def forward_events(self) -> None:
        try:
            events = ray.get(self.sink.take.remote(), timeout=30)
        except (GetTimeoutError, RayError):
            return
        if self.progress is None:
            return
        for kind, cell, epoch, total in events:
            if kind == "started":
                self.progress.started(cell)
            else:
                self.progress.epoch(cell, epoch, total)
