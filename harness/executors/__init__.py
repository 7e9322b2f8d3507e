"""Executors: how a run's units of work are executed (``--executor``). See :mod:`harness.executors.base`.

``sequential`` runs units one after another in this process; ``process`` runs them in worker processes;
``stacked`` runs seed groups of stackable methods as one stacked computation in this process (``--stack K``
seeds per group, default all of a run's seeds), other units one after another. ``auto`` (the default): on a GPU,
seed groups stacked and the other units in ``--workers`` processes sharing the GPU; on a CPU, worker processes
when more than one worker and more than one unit make that worth it (stacking does not pay on a CPU), else
sequentially. Under ``auto`` the driver trains units itself while the workers start and whenever none is free
(``--workers N`` is then the driver plus N - 1 worker processes).
"""

from __future__ import annotations

import logging
import os

from harness.executors.base import Executor, OnResult, registering_modules
from harness.executors.process import ProcessExecutor
from harness.executors.sequential import SequentialExecutor
from harness.executors.stacked import CombinedExecutor, StackedExecutor
from harness.plan import Plan, WorkUnit

log = logging.getLogger(__name__)
EXECUTOR_NAMES = ("auto", "sequential", "process", "stacked")
MAX_STACK = 64  # seeds per group when --stack is auto: enough to fill a GPU with these small models


def worker_count(plan: Plan) -> int:
    """``--workers``, or by default one per CPU core on a CPU (with ``--threads`` each) and one on a GPU."""
    if plan.config.workers:
        return plan.config.workers
    return 1 if plan.device.type == "cuda" else max(1, (os.cpu_count() or 1) // plan.config.threads)


def stack_size(plan: Plan) -> int:
    """Seeds per unit for stackable methods: ``--stack K``, or (0 = auto) all of the run's seeds (at most
    ``MAX_STACK``) when the executor stacks (``stacked``, or ``auto`` on a GPU), else 1."""
    if plan.config.stack:
        return plan.config.stack
    stacks = plan.config.executor == "stacked" or (plan.config.executor == "auto" and plan.device.type == "cuda")
    return min(len(plan.config.seeds), MAX_STACK) if stacks else 1


def check_executor(plan: Plan) -> None:
    if plan.config.executor not in EXECUTOR_NAMES:
        raise ValueError(f"--executor {plan.config.executor!r} is unknown; valid: {', '.join(EXECUTOR_NAMES)}")


def choose(plan: Plan, units: list[WorkUnit]) -> Executor:
    """The executor for ``plan``'s ``--executor`` option (``auto``: see the module docstring)."""
    check_executor(plan)
    name, cuda = plan.config.executor, plan.device.type == "cuda"
    stacked = StackedExecutor(compile=plan.config.compile)
    if name == "stacked":
        return stacked
    rest = local_executor(plan, [u for u in units if len(u.cells) == 1] if name == "auto" else units)
    if name == "auto" and cuda and any(len(u.cells) > 1 for u in units):
        return CombinedExecutor(stacked, rest)
    return rest


def local_executor(plan: Plan, units: list[WorkUnit]) -> Executor:
    """Worker processes or sequential, as ``--executor`` (``process``/``sequential``/``auto``) and the work ask."""
    name, workers = plan.config.executor, worker_count(plan)
    if name == "sequential" or (name == "auto" and (workers <= 1 or len(units) <= 1)):
        return SequentialExecutor()
    modules = registering_modules(plan)
    if modules is None:
        log.warning("running sequentially: an entry of this run was registered inside a function or by __main__, "
                    "which worker processes cannot repeat; register it at a module's top level to run in parallel")
        return SequentialExecutor()
    # auto: the driver trains too while workers start, so a short grid is never slower than a sequential one
    return ProcessExecutor(workers, modules, driver_works=name == "auto")


__all__ = ["EXECUTOR_NAMES", "Executor", "OnResult", "ProcessExecutor", "SequentialExecutor", "StackedExecutor",
           "check_executor", "choose", "stack_size", "worker_count"]
