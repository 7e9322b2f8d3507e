"""The runner: expand a run config into cells (dataset x method x seed), train, evaluate, store.

Everything the user named is validated by :func:`prepare` before any training starts (unknown names,
method options, devices, protocols that do not fit a dataset). A cell that raises is recorded as failed with
its error and the sweep goes on; finished cells are skipped when the same command runs again.

Protocols and datasets: a protocol named explicitly must fit every dataset (e.g. ``frame_missing`` on a
dataset with utterance-level features, T = 1, is an error before training). A protocol selected implicitly
(``all`` or a glob) is skipped for the datasets it cannot run on; ``run.json`` lists what was skipped and why.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import re
import shutil
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
import torch

from corruptions.base import Protocol
from corruptions.spec import FeatureStats
from harness import __version__, builtins
from harness.config import RunConfig, check_global_options, default_out_dir, method_config, to_jsonable
from harness.data import DataOptions, Dataset
from harness.evaluate import evaluate, expand, prediction_arrays, to_records
from harness.registry import DATASETS, METHODS, PROTOCOLS, import_plugin
from harness.seeding import seed_everything, stable_seed, torch_generator
from harness.store import RunStore, now
from harness.training import FitContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    dataset: str
    method: str
    seed: int

    @property
    def id(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{self.dataset}__{self.method}__seed{self.seed}")


class Progress(TypingProtocol):
    """What the runner reports; the CLI draws a progress bar from it."""

    def start(self, total: int, done: int) -> None: ...
    def cell(self, cell: Cell) -> None: ...
    def epoch(self, epoch: int, total: int) -> None: ...
    def finished(self, cell: Cell, status: str) -> None: ...


@dataclass
class Plan:
    config: RunConfig
    methods: list[str]
    datasets: dict[str, DataOptions]
    protocols: list[Protocol]
    method_configs: dict[str, Any]
    device: torch.device
    out: Path
    cells: list[Cell] = field(default_factory=list)
    explicit_protocols: set[str] = field(default_factory=set)

    def protocols_for(self, data: Dataset) -> tuple[list[Protocol], dict[str, str]]:
        """The protocols to run on ``data`` and ``{protocol: reason}`` for implicitly selected ones skipped."""
        use, skipped = [], {}
        for p in self.protocols:
            reason = p.unsupported(data.spec)
            if reason and p.name not in self.explicit_protocols:
                skipped[p.name] = reason
            else:
                use.append(p)
        return use, skipped


@dataclass
class Summary:
    out: Path
    done: list[str]
    failed: dict[str, str]
    skipped: list[str]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was requested but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)


def parse_dataset(entry: str, config: RunConfig) -> tuple[str, DataOptions]:
    name, _, path = entry.partition("=")
    DATASETS.get(name)
    data_dir = Path(config.data_dir).expanduser() if config.data_dir else None
    return name, DataOptions(preset=config.preset, path=Path(path).expanduser() if path else None, data_dir=data_dir)


def prepare(config: RunConfig) -> Plan:
    """Resolve and validate every name and option; no data is loaded and nothing is trained."""
    builtins.load()
    for module in config.plugins:
        import_plugin(module)
    methods = METHODS.resolve(config.methods)
    check_global_options(config.method_options, methods)
    configs = {m: method_config(m, config.method_options) for m in methods}
    datasets = dict(parse_dataset(d, config) for d in config.datasets)
    protocols = [PROTOCOLS.get(p) for p in PROTOCOLS.resolve(config.protocols)]
    out = Path(config.out).expanduser() if config.out else default_out_dir(config.identity_hash())
    plan = Plan(config, methods, datasets, protocols, configs, resolve_device(config.device), out,
                explicit_protocols={p for p in config.protocols if p in PROTOCOLS})
    plan.cells = [Cell(d, m, s) for d in datasets for m in methods for s in config.seeds]
    return plan


def load_datasets(plan: Plan) -> dict[str, Dataset]:
    """Load and validate every dataset and check every protocol fits it, before any training."""
    loaded = {}
    for name, options in plan.datasets.items():
        data = DATASETS.get(name)(options)
        protocols, skipped = plan.protocols_for(data)
        for protocol, reason in skipped.items():
            log.warning("skipping protocol %s on %s: %s", protocol, name, reason)
        expand(protocols, data.spec, FeatureStats.from_batch(data.train))
        loaded[name] = data
    return loaded


def run_meta(plan: Plan, datasets: dict[str, Dataset]) -> dict[str, Any]:
    return {
        "config": to_jsonable(plan.config),
        "out": str(plan.out),
        "method_configs": {m: dataclasses.asdict(c) for m, c in plan.method_configs.items()},
        "protocols": [{"name": p.name, "version": p.version, "hash": p.digest(), "params": dataclasses.asdict(p)}
                      for p in plan.protocols],
        "datasets": {n: {"spec": dataclasses.asdict(d.spec), "provenance": dict(d.provenance),
                         "sizes": {s: len(d.split(s)) for s in ("train", "valid", "test")},
                         "skipped_protocols": plan.protocols_for(d)[1]}
                     for n, d in datasets.items()},
        "versions": {"mibench": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "git": git_state(),
        "device": str(plan.device),
        "device_name": torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else platform.processor(),
        "host": platform.node(),
    }


def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the mibench source tree, when it is a git checkout."""
    src = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def run_cell(cell: Cell, data: Dataset, plan: Plan, progress: Progress | None,
             stats: FeatureStats | None = None) -> tuple[list, dict, dict]:
    """Train one method on one dataset for one seed, evaluate under every condition; return what to store.

    ``stats``: the training split's feature statistics (computed from ``data.train`` when not given).
    """
    cell_seed = stable_seed("cell", cell.dataset, cell.method, cell.seed)
    seed_everything(cell_seed)
    cls, cfg = METHODS.get(cell.method), plan.method_configs[cell.method]
    model = cls(data.spec, cfg).to(plan.device)
    ctx = FitContext(plan.device, torch_generator(cell_seed, plan.device), cell_seed,
                     on_epoch=progress.epoch if progress else lambda e, t: None)
    t0 = time.perf_counter()
    fit = model.fit(data, ctx)
    t1 = time.perf_counter()
    stats = stats if stats is not None else FeatureStats.from_batch(data.train)
    results = evaluate(model, data.test, expand(plan.protocols_for(data)[0], data.spec, stats))
    target = data.test.y.cpu().numpy()
    base = {"dataset": cell.dataset, "method": cell.method, "seed": cell.seed}
    records = to_records(results, target, data.spec, base)
    preds = prediction_arrays(results, target, np.asarray(data.ids.get("test", np.arange(len(target)))))
    info = {"cell_seed": cell_seed, "fit": dataclasses.asdict(fit), "diagnostics": model.diagnostics(),
            "train_time_s": t1 - t0, "eval_time_s": time.perf_counter() - t1, "device": str(plan.device),
            "n_parameters": sum(p.numel() for p in model.parameters())}
    return records, preds, info


def run(config: RunConfig, progress: Progress | None = None, overwrite: bool = False) -> Summary:
    """Run every cell of ``config`` (skipping finished ones) and return what happened."""
    plan = prepare(config)
    datasets = load_datasets(plan)
    if overwrite and (plan.out / "run.json").exists():
        shutil.rmtree(plan.out)
    store = RunStore.open(plan.out, config.identity(), run_meta(plan, datasets))
    stats = {n: FeatureStats.from_batch(d.train) for n, d in datasets.items()}  # on CPU: device-independent
    datasets = {n: d.to(plan.device) for n, d in datasets.items()}
    summary = Summary(plan.out, [], {}, [])
    if progress:
        progress.start(len(plan.cells), sum(store.is_done(c.id) for c in plan.cells))
    for cell in plan.cells:
        if store.is_done(cell.id):
            summary.skipped.append(cell.id)
            continue
        if progress:
            progress.cell(cell)
        store.mark(cell.id, "running", started_at=now())
        try:
            records, preds, info = run_cell(cell, datasets[cell.dataset], plan, progress, stats[cell.dataset])
            store.write_cell(cell.id, records, preds, **info)
            summary.done.append(cell.id)
        except Exception as exc:  # a failing cell is recorded and the sweep goes on
            log.error("cell %s failed: %s", cell.id, exc)
            store.mark(cell.id, "failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            summary.failed[cell.id] = f"{type(exc).__name__}: {exc}"
        if progress:
            progress.finished(cell, store.cell_status(cell.id) or "failed")
    store.meta["finished_at"] = now()
    store.save_meta()
    return summary
