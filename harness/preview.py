"""``mibench run --dry-run``: the plan a run would execute, and how long it would take where timings are stored.

Nothing is trained and nothing is written: the config is validated and the datasets are loaded (to count each
protocol's conditions and to refuse what a real run would refuse), exactly as a run starts.

Estimated time: a cell is expected to take the mean training + evaluation time of the stored cells of the same
dataset (name and preset) and method with the same resolved method config, found in the run's own directory
(a resume) and in the runs under ``$MIBENCH_HOME/runs``; cells with no such timing are counted, not guessed.
The wall-clock estimate divides the cells' total by the number of cells that run at a time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corruptions.spec import FeatureStats
from harness.config import RunConfig, default_out_dir
from harness.executors import worker_count
from harness.plan import Cell, Plan, load_datasets, prepare
from harness.runs import planned


@dataclass(frozen=True)
class ProtocolPlan:
    """One protocol on one dataset: how many conditions it evaluates, or why it is skipped there."""

    protocol: str
    version: int
    dataset: str
    conditions: int
    skipped: str = ""


@dataclass
class Preview:
    plan: Plan
    protocols: list[ProtocolPlan]
    done: set[str]  # cells already done in the run directory (a resume skips them)
    timings: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (dataset, method) -> seconds
    workers: int = 1

    @property
    def todo(self) -> list[Cell]:
        return [c for c in self.plan.cells if c.id not in self.done]

    def estimate(self) -> tuple[float, int]:
        """(seconds of cell time for the cells with a stored timing, number of cells without one)."""
        total, unknown = 0.0, 0
        for cell in self.todo:
            seen = self.timings.get((cell.dataset, cell.method))
            if seen:
                total += sum(seen) / len(seen)
            else:
                unknown += 1
        return total, unknown


def _run_jsons(roots: Iterable[Path]) -> list[dict[str, Any]]:
    metas = []
    for root in roots:
        for path in [root / "run.json", *sorted(root.glob("*/run.json"))] if root.is_dir() else []:
            try:
                metas.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # a run being written or a broken file: its timings are not used
    return metas


def stored_timings(plan: Plan, roots: Iterable[Path]) -> dict[tuple[str, str], list[float]]:
    """Seconds per done cell of the same dataset (name and preset), method and resolved method config."""
    # as run.json stores them (harness.provenance.run_meta), after a JSON round trip
    wanted = {m: json.loads(json.dumps(dataclasses.asdict(cfg), default=str)) for m, cfg in plan.method_configs.items()}
    out: dict[tuple[str, str], list[float]] = {}
    for meta in _run_jsons(roots):
        configs = meta.get("method_configs") or {}
        presets = {d: (info.get("provenance") or {}).get("preset") for d, info in (meta.get("datasets") or {}).items()}
        kinds = {Cell(d, m, s).id: (d, m) for d, m, s in planned(meta)}
        for cell_id, entry in (meta.get("cells") or {}).items():
            dataset, method = kinds.get(cell_id, ("", ""))
            if method not in wanted or dataset not in plan.datasets or entry.get("status") != "done" or \
                    entry.get("train_time_s") is None:
                continue
            if configs.get(method) == wanted[method] and presets.get(dataset) == plan.datasets[dataset].preset:
                seconds = float(entry["train_time_s"]) + float(entry.get("eval_time_s") or 0.0)
                out.setdefault((dataset, method), []).append(seconds)
    return out


def preview(config: RunConfig) -> Preview:
    """Validate ``config`` and load its datasets as a run would; train and write nothing."""
    plan = prepare(config)
    datasets = load_datasets(plan)
    protocols = []
    for name, data in datasets.items():
        use, skipped = plan.protocols_for(data)
        stats = FeatureStats.from_batch(data.train)
        protocols += [ProtocolPlan(p.name, p.version, name, len(p.conditions(data.spec, stats))) for p in use]
        protocols += [ProtocolPlan(p, next(q.version for q in plan.protocols if q.name == p), name, 0, why)
                      for p, why in skipped.items()]
    done = set()
    if (plan.out / "run.json").is_file():
        cells = (json.loads((plan.out / "run.json").read_text()).get("cells") or {})
        done = {c for c, e in cells.items() if e.get("status") == "done"}
    roots = {plan.out, default_out_dir("-").parent}
    return Preview(plan, protocols, done, stored_timings(plan, roots), worker_count(plan))
