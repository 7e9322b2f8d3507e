"""Executors: how a run's units of work are executed (``--executor``). See :mod:`harness.executors.base`.

``sequential`` runs units one after another in this process; ``process`` runs them in worker processes;
``stacked`` runs seed groups of stackable methods as one stacked computation in this process (``--stack K``
seeds per group, default all of a run's seeds), other units one after another. ``ray`` runs them on a Ray cluster
(:mod:`harness.executors.ray`, imported only then: ``import harness`` never needs Ray). ``auto`` (the default):
on a GPU, seed groups stacked and the other units in ``--workers`` processes sharing the GPU; on a CPU, worker processes
when more than one worker and more than one unit make that worth it (stacking does not pay on a CPU), else
sequentially. Under ``auto`` the driver trains units itself while the workers start and whenever none is free
(``--workers N`` is then the driver plus N - 1 worker processes).
"""

from __future__ import annotations

import logging
import os
import socket

from harness.executors.base import Executor, OnResult, registering_modules
from harness.executors.process import ProcessExecutor
from harness.executors.sequential import SequentialExecutor
from harness.executors.stacked import CombinedExecutor, StackedExecutor
from harness.plan import Plan, WorkUnit

log = logging.getLogger(__name__)
EXECUTOR_NAMES = ("auto", "sequential", "process", "stacked", "ray")
MAX_STACK = 64  # seeds per group when --stack is auto: enough to fill a GPU with these small models
RAY_HINT = 'pip install "mibench[ray]"'


def check(plan: Plan) -> None:
    """Refuse an unusable ``--executor`` and its options before any data is loaded or directory touched."""
    cfg = plan.config
    if cfg.executor not in EXECUTOR_NAMES:
        raise ValueError(f"--executor {cfg.executor!r} is unknown; valid: {', '.join(EXECUTOR_NAMES)}")
    ray_only = {"--address": cfg.ray_address, "--gpus-per-task": cfg.gpus_per_task or None}
    if cfg.executor != "ray":
        given = [k for k, v in ray_only.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to --executor ray (this run uses {cfg.executor})")
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError(f"--executor ray needs Ray, which is not installed: {RAY_HINT}") from None
    if cfg.device.startswith("cuda") and cfg.gpus_per_task <= 0:
        raise ValueError(f"--device {cfg.device} with --executor ray needs --gpus-per-task > 0: a Ray worker sees "
                         f"only the GPUs it reserved")
    if registering_modules(plan) is None:
        raise ValueError("--executor ray: an entry of this run was registered inside a function or by __main__, "
                         "which Ray workers cannot repeat; register it at a module's top level")
    if cfg.ray_address is None:
        return
    address, problem = resolve(cfg.ray_address)
    if problem or (problem := unreachable(address)):
        raise ValueError(f"--address {cfg.ray_address}: {problem}; start the cluster with 'ray start --head' or "
                         f"leave --address out for a local instance")


def resolve(address: str) -> tuple[str, str | None]:
    """The HOST:PORT that ``ray.init(address=address)`` would connect to, and why none where there is none.

    ``auto`` is resolved the way Ray resolves it (``RAY_ADDRESS``, else the cluster that ``ray start`` last
    recorded on this machine), through a function that is not part of Ray's public API: where it is missing,
    ``auto`` is left to ``ray.init``, which then refuses after the run directory is opened."""
    if address != "auto":
        return address, None
    try:
        from ray._private.services import get_ray_address_from_environment
    except ImportError:
        return os.environ.get("RAY_ADDRESS", "auto"), None
    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        return address, "no running Ray cluster was found on this machine and RAY_ADDRESS is not set"
    return found or "auto", None


def unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why ``[scheme://]HOST:PORT`` takes no TCP connection within ``timeout`` seconds, or None when it does.
    Checked before anything is written: Ray itself would wait minutes for an address nobody answers at."""
    if address == "auto":  # unresolved (resolve()): left to ray.init
        return None
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return f"expected auto or HOST:PORT, got {address!r}"
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or exc})"
    return None


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


def choose(plan: Plan, units: list[WorkUnit]) -> Executor:
    """The executor for ``plan``'s ``--executor`` option (``auto``: see the module docstring)."""
    check(plan)
    if plan.config.executor == "ray":
        from harness.executors.ray import RayExecutor

        return RayExecutor(plan.config, registering_modules(plan) or [])
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
           "check", "choose", "stack_size", "worker_count"]
