"""In-process seed groups: each unit (a seed group of a stackable method, or a single cell) runs in this process,
groups as one stacked computation (``harness.stacking``). On a GPU this keeps the device busy with a few large
kernels instead of many small ones; on a CPU it is correct but rarely faster than worker processes."""

from __future__ import annotations

from typing import Any

from harness.executors.base import OnResult
from harness.executors.sequential import SequentialExecutor
from harness.plan import Loaded, WorkUnit
from harness.work import Progress


class StackedExecutor(SequentialExecutor):
    """The sequential executor over seed-group units (``run_unit`` stacks a group of a stackable method)."""

    name = "stacked"

    def __init__(self, compile: bool = False) -> None:
        self.compile = compile

    def execution(self) -> dict[str, Any]:
        return {"executor": self.name, "compile": self.compile}


class CombinedExecutor:
    """``auto`` on a GPU: seed groups stacked in this process, the other units by ``rest`` (worker processes
    sharing the GPU, or sequentially); both record their own executor per cell."""

    name = "auto"

    def __init__(self, stacked: StackedExecutor, rest: Any) -> None:
        self.stacked, self.rest = stacked, rest

    def execution(self) -> dict[str, Any]:
        return self.stacked.execution()

    def execute(self, loaded: Loaded, units: list[WorkUnit], on_result: OnResult,
                progress: Progress | None) -> None:
        groups = [u for u in units if len(u.cells) > 1]
        singles = [u for u in units if len(u.cells) == 1]
        if groups:
            self.stacked.execute(loaded, groups, on_result, progress)
        if singles:
            self.rest.execute(loaded, singles, on_result, progress)
