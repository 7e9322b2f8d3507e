"""The executor seam: one small interface that every way of running units of work implements.

An executor receives the loaded plan and the units still to do, runs each unit wherever it runs them (this
process, worker processes, a cluster), and hands every :class:`~harness.work.CellResult` to ``on_result`` in the
driver's process, which alone writes the run directory. It reports ``started``/``epoch`` events to ``progress``;
the driver reports ``finished`` after storing. Executors never import the runner, and the runner never imports
an executor module by name: it asks :func:`harness.executors.choose`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from harness.plan import Loaded, Plan, WorkUnit
from harness.registry import CORRUPTIONS, DATASETS, METHODS, METRICS, PROTOCOLS
from harness.work import CellResult, Progress

OnResult = Callable[[CellResult], None]


class Executor(Protocol):
    """Runs units of work; ``name`` is recorded per cell (``execution.executor``)."""

    name: str

    def execute(self, loaded: Loaded, units: list[WorkUnit], on_result: OnResult,
                progress: Progress | None) -> None: ...

    def execution(self) -> dict[str, Any]:
        """What is recorded per cell about how it ran (never part of the run identity)."""
        ...


def registering_modules(plan: Plan) -> list[str] | None:
    """Modules a fresh process must import to see everything this process registered (the run's methods,
    datasets and protocols, every metric and corruption), or None if some entry was registered in a way a fresh
    process cannot repeat (inside a function, or by ``__main__``)."""
    entries = [(METHODS, n) for n in plan.methods] + [(DATASETS, n) for n in plan.datasets]
    entries += [(PROTOCOLS, p.name) for p in plan.protocols]
    entries += [(METRICS, n) for n, _ in METRICS.entries()] + [(CORRUPTIONS, n) for n, _ in CORRUPTIONS.entries()]
    origins = [registry.origin(name) for registry, name in entries]
    if any(o is None for o in origins):
        return None
    return sorted(set(origins))
