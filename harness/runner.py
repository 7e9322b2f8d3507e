"""The runner: expand a run config into cells (dataset x method x seed), train, evaluate, store.

Everything the user named is validated by :func:`prepare` before any training starts (unknown names,
method options, devices, protocols that do not fit a dataset). A cell that raises is recorded as failed with
its error and the sweep goes on; finished cells are skipped when the same command runs again.

Reportability (``run.json`` key ``reportable``, written when a run ends, removed while it runs): a run's
numbers may go into a paper table only if

1. every planned cell (dataset x method x seed) is ``done`` - none failed, none unfinished;
2. no dataset was built with a smoke-test preset (:data:`SMOKE_PRESETS`, i.e. ``tiny``);
3. no method was trained for fewer ``epochs`` than its config's default (a ``--set epochs=2`` smoke run).

Otherwise ``reportable = {"ok": false, "reasons": [...]}`` and ``mibench report`` refuses the run unless
``--allow-partial`` is given, in which case every caption says the run is partial.

Protocols and datasets: a protocol named explicitly must fit every dataset (e.g. ``frame_missing`` on a
dataset with utterance-level features, T = 1, is an error before training). A protocol selected implicitly
(``all`` or a glob) is skipped for the datasets it cannot run on; ``run.json`` lists what was skipped and why.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
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
from harness import builtins
from harness.config import RunConfig, check_global_options, default_out_dir, method_config
from harness.data import DataOptions, Dataset
from harness.evaluate import evaluate, expand, prediction_arrays, to_records
from harness.provenance import identity, run_meta
from harness.registry import DATASETS, METHODS, METRICS, PROTOCOLS, import_plugin
from harness.seeding import seed_everything, stable_seed, torch_generator
from harness.store import RunStore, now
from harness.training import FitContext, resolve_select_metric

log = logging.getLogger(__name__)
SMOKE_PRESETS = ("tiny",)


@dataclass(frozen=True)
class Cell:
    dataset: str
    method: str
    seed: int

    @property
    def id(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{self.dataset}__{self.method}__seed{self.seed}")


class Progress(TypingProtocol):
    """What the runner reports; the CLI draws a progress bar from it. ``cell`` names the cell a sequential run
    starts; ``running`` lists the cells in worker processes now (parallel runs)."""

    def start(self, total: int, done: int) -> None: ...
    def cell(self, cell: Cell) -> None: ...
    def epoch(self, epoch: int, total: int) -> None: ...
    def finished(self, cell: Cell, status: str) -> None: ...
    def running(self, cells: list[Cell]) -> None: ...


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
    return name, DataOptions(preset=config.preset, path=Path(path).expanduser() if path else None, data_dir=data_dir,
                             nan_value=float(config.nan_value), pool=config.pool, standardize=config.standardize,
                             iemocap_classes=config.iemocap_classes)


def parse_datasets(config: RunConfig) -> dict[str, DataOptions]:
    """``name`` / ``name=PATH`` entries -> options per dataset; a name given twice is an error (one would be lost)."""
    parsed = [parse_dataset(d, config) for d in config.datasets]
    names = [n for n, _ in parsed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"--datasets names {', '.join(repeated)} more than once ({', '.join(config.datasets)}); "
                         "a run holds one file per dataset name: use separate --out runs for other files")
    return dict(parsed)


def check_metrics(plan: Plan, datasets: dict[str, Dataset], table_metric: str | None) -> None:
    """Every method's selection metric must fit every dataset's task, and the final table's metric (``--metric``)
    must be a metric of at least one dataset's task; both are checked before any training."""
    tasks = {d.spec.task for d in datasets.values()}
    for method, cfg in plan.method_configs.items():
        for name, data in datasets.items():
            try:
                resolve_select_metric(cfg, data.spec.task)
            except ValueError as exc:
                raise ValueError(f"method {method}: {exc} ({name}); set {method}.select_metric=auto") from None
    if table_metric is not None:
        spec = METRICS.get(table_metric)
        if spec.task not in tasks:
            valid = sorted(n for n, m in METRICS.entries() if m.task in tasks)
            raise ValueError(f"--metric {table_metric} is a {spec.task} metric but this run's datasets are "
                             f"{', '.join(sorted(tasks))}; valid: {', '.join(valid)}")


def prepare(config: RunConfig) -> Plan:
    """Resolve and validate every name and option; no data is loaded and nothing is trained."""
    builtins.load()
    for module in config.plugins:
        import_plugin(module)
    methods = METHODS.resolve(config.methods)
    check_global_options(config.method_options, methods)
    configs = {m: method_config(m, config.method_options) for m in methods}
    datasets = parse_datasets(config)
    # A glob never selects the held-out validation family (tuning only); naming it is refused by ``expand``.
    protocols = [PROTOCOLS.get(p) for p in PROTOCOLS.resolve(config.protocols)
                 if p in config.protocols or not PROTOCOLS.get(p).held_out]
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


def reportability(plan: Plan, store: RunStore) -> dict[str, Any]:
    """The ``reportable`` mark of ``run.json``: ``{"ok": bool, "reasons": [str, ...]}`` (rule: module docstring)."""
    reasons: list[str] = []
    not_done = [f"{c.id} ({store.cell_status(c.id) or 'not started'})" for c in plan.cells if not store.is_done(c.id)]
    if not_done:
        shown = ", ".join(not_done[:5]) + (f" and {len(not_done) - 5} more" if len(not_done) > 5 else "")
        reasons.append(f"{len(not_done)} of {len(plan.cells)} cells not done: {shown}")
    for name in plan.datasets:
        preset = store.meta["datasets"][name]["provenance"].get("preset")
        if preset in SMOKE_PRESETS:
            reasons.append(f"dataset {name} uses the smoke-test preset {preset!r}")
    for method, cfg in plan.method_configs.items():
        default = METHODS.get(method).Config().epochs
        if cfg.epochs < default:
            reasons.append(f"method {method} trained for epochs={cfg.epochs}, below its default {default}")
    return {"ok": not reasons, "reasons": reasons}


def prepare_process(config: RunConfig) -> tuple[Plan, dict[str, Dataset], dict[str, FeatureStats]]:
    """What every process of a run does first (the runner and each worker): plan, set threads, load the data."""
    plan = prepare(config)
    # The models are tiny: intra-op threads mostly wait on each other, and with other processes on the machine
    # OpenMP's spinning made a CPU cell 30x slower in our measurements. One thread per process by default.
    torch.set_num_threads(config.threads)
    datasets = load_datasets(plan)
    stats = {n: FeatureStats.from_batch(d.train) for n, d in datasets.items()}  # on CPU: device-independent
    return plan, datasets, stats


def attempt(cell: Cell, plan: Plan, data: Dataset, stats: FeatureStats, progress: Progress | None):
    """(cell, stored payload or None, error or None): a failing cell is reported, never raised."""
    try:
        return cell, run_cell(cell, data, plan, progress, stats), None
    except Exception as exc:  # a failing cell is recorded and the sweep goes on
        return cell, None, (f"{type(exc).__name__}: {exc}", traceback.format_exc())


def store_result(store: RunStore, summary: Summary, result, progress: Progress | None,
                 code: dict[str, Any]) -> None:
    """Persist what :func:`attempt` returned (a done cell, or a failed one with its error), with the code's commit."""
    cell, payload, error = result
    if error is None:
        records, preds, info = payload
        store.write_cell(cell.id, records, preds, git=code, **info)
        summary.done.append(cell.id)
    else:
        log.error("cell %s failed: %s", cell.id, error[0])
        store.mark(cell.id, "failed", error=error[0], traceback=error[1], git=code)
        summary.failed[cell.id] = error[0]
    if progress:
        progress.finished(cell, store.cell_status(cell.id) or "failed")


def run(config: RunConfig, progress: Progress | None = None, overwrite: bool = False,
        table_metric: str | None = None) -> Summary:
    """Run every cell of ``config`` (skipping finished ones) and return what happened.

    With more than one worker (``config.workers``; 0 = one per CPU core on a CPU, one on a GPU) cells run in
    worker processes that each load the data themselves; this process stays the only writer of the run
    directory. ``table_metric``: the metric of the table the caller prints afterwards, checked up front.
    """
    builtins.load()
    if table_metric is not None:
        METRICS.get(table_metric)  # an unknown name is answered before any data is loaded
    plan, datasets, stats = prepare_process(config)
    check_metrics(plan, datasets, table_metric)
    ident = identity(plan, datasets)
    if overwrite and (plan.out / "run.json").exists():
        shutil.rmtree(plan.out)
    # A run made before data fingerprints were stored cannot be checked against the data: it is taken as is.
    defaults = {**RunConfig().identity(), "method_options": {}, "data": ident["data"]}
    meta = run_meta(plan, datasets)
    store = RunStore.open(plan.out, ident, meta, defaults=defaults)
    store.meta.pop("reportable", None)  # re-decided when this run ends; absent = unfinished
    summary = Summary(plan.out, [], {}, [])
    todo = [c for c in plan.cells if not store.is_done(c.id)]
    summary.skipped = [c.id for c in plan.cells if store.is_done(c.id)]
    if progress:
        progress.start(len(plan.cells), len(summary.skipped))
    workers = config.workers or (1 if plan.device.type == "cuda" else max(1, (os.cpu_count() or 1) // config.threads))
    code = meta["git"]  # the code that trains this session's cells, recorded per cell
    from harness.executors import registering_modules, run_parallel  # worker processes import this module

    parallel = workers > 1 and len(todo) > 1
    modules = registering_modules(plan) if parallel else None
    if parallel and modules is None:
        log.warning("running sequentially: an entry of this run was registered inside a function or by __main__, "
                    "which worker processes cannot repeat; register it at a module's top level to run in parallel")
    if modules is not None:
        run_parallel(plan, todo, workers, store, summary, progress, code, modules)
    else:
        datasets = {n: d.to(plan.device) for n, d in datasets.items()}
        for cell in todo:
            if progress:
                progress.cell(cell)
            store.mark(cell.id, "running", started_at=now())
            store_result(store, summary, attempt(cell, plan, datasets[cell.dataset], stats[cell.dataset],
                                                   progress), progress, code)
    store.meta["finished_at"] = now()
    store.meta["reportable"] = reportability(plan, store)
    store.save_meta()
    return summary
