"""In-process, one unit after another: the reference mode every other executor must agree with."""

from __future__ import annotations

from typing import Any

from harness.executors.base import OnResult
from harness.plan import Loaded, WorkUnit
from harness.work import Progress, on_device, run_unit


class SequentialExecutor:
    name = "sequential"

    def execution(self) -> dict[str, Any]:
        return {"executor": self.name}

    def execute(self, loaded: Loaded, units: list[WorkUnit], on_result: OnResult,
                progress: Progress | None) -> None:
        datasets = on_device(loaded)
        for unit in units:
            for result in run_unit(unit, loaded, datasets, progress, self.execution()):
                on_result(result)
