"""Executors: how a run's units of work are executed (``--executor``). See :mod:`harness.executors.base`.

``sequential`` runs units one after another in this process; ``process`` runs them in worker processes;
``auto`` (the default) uses worker processes when more than one worker and more than one unit make that worth
it, and runs sequentially otherwise.
"""

from __future__ import annotations

import logging
import os

from harness.executors.base import Executor, OnResult, registering_modules
from harness.executors.process import ProcessExecutor
from harness.executors.sequential import SequentialExecutor
from harness.plan import Plan, WorkUnit

log = logging.getLogger(__name__)
EXECUTOR_NAMES = ("auto", "sequential", "process")


def worker_count(plan: Plan) -> int:
    """``--workers``, or by default one per CPU core on a CPU (with ``--threads`` each) and one on a GPU."""
    if plan.config.workers:
        return plan.config.workers
    return 1 if plan.device.type == "cuda" else max(1, (os.cpu_count() or 1) // plan.config.threads)


def choose(plan: Plan, units: list[WorkUnit]) -> Executor:
    """The executor for ``plan``'s ``--executor`` option (``auto``: see the module docstring)."""
    name = plan.config.executor
    if name not in EXECUTOR_NAMES:
        raise ValueError(f"--executor {name!r} is unknown; valid: {', '.join(EXECUTOR_NAMES)}")
    workers = worker_count(plan)
    if name == "sequential" or (name == "auto" and (workers <= 1 or len(units) <= 1)):
        return SequentialExecutor()
    modules = registering_modules(plan)
    if modules is None:
        log.warning("running sequentially: an entry of this run was registered inside a function or by __main__, "
                    "which worker processes cannot repeat; register it at a module's top level to run in parallel")
        return SequentialExecutor()
    return ProcessExecutor(workers, modules)


__all__ = ["EXECUTOR_NAMES", "Executor", "OnResult", "ProcessExecutor", "SequentialExecutor", "choose",
           "worker_count"]
