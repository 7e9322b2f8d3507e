"""Planning: a run config becomes a validated :class:`Plan` of cells (dataset x method x seed), grouped into
units of work for an executor. Nothing here trains; :func:`prepare` loads no data either.

Everything the user named is validated by :func:`prepare` before any training starts (unknown names, method
options, devices, protocols that do not fit a dataset). Protocols and datasets: a protocol named explicitly
must fit every dataset (e.g. ``frame_missing`` on a dataset with utterance-level features, T = 1, is an error
before training). A protocol selected implicitly (``all`` or a glob) is skipped for the datasets it cannot run
on; ``run.json`` lists what was skipped and why.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from corruptions.base import Protocol
from corruptions.spec import FeatureStats
from harness import builtins
from harness.config import RunConfig, check_global_options, default_out_dir, method_config
from harness.data import DataOptions, Dataset
from harness.datasets.limits import parse_size
from harness.evaluate import expand
from harness.registry import DATASETS, METHODS, METRICS, PROTOCOLS, import_plugin
from harness.selection import Selection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One trained model: a method on a dataset for one seed; ``id`` names its files and its run.json entry."""

    dataset: str
    method: str
    seed: int

    @property
    def id(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{self.dataset}__{self.method}__seed{self.seed}")

    @property
    def label(self) -> str:
        return f"{self.dataset} · {self.method} · seed {self.seed}"


@dataclass(frozen=True)
class WorkUnit:
    """What an executor runs at once: one cell, or a seed group (cells of one dataset and method, trained as one
    stacked computation where the method allows it). A unit's results are split back per cell."""

    cells: tuple[Cell, ...]

    def __post_init__(self) -> None:
        if not self.cells or len({(c.dataset, c.method) for c in self.cells}) != 1:
            raise ValueError(f"a work unit holds cells of one dataset and method, got {self.cells}")

    @property
    def dataset(self) -> str:
        return self.cells[0].dataset

    @property
    def method(self) -> str:
        return self.cells[0].method

    @property
    def id(self) -> str:
        seeds = ",".join(str(c.seed) for c in self.cells)
        return f"{self.cells[0].dataset}__{self.cells[0].method}__seeds{seeds}"


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
    selection: Selection = field(default_factory=Selection)
    reference: str | None = None

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


def resolve_device(name: str, here: bool = True) -> torch.device:
    """The device cells train on. ``here`` False: they train elsewhere (Ray workers, which resolve the name
    themselves), so this process's lack of a GPU is no error and ``auto`` means nothing about them."""
    if name == "auto":
        return torch.device("cuda" if here and torch.cuda.is_available() else "cpu")
    if here and name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was requested but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)


def parse_dataset(entry: str, config: RunConfig) -> tuple[str, DataOptions]:
    name, _, path = entry.partition("=")
    DATASETS.get(name)
    data_dir = Path(config.data_dir).expanduser() if config.data_dir else None
    return name, DataOptions(preset=config.preset, path=Path(path).expanduser() if path else None, data_dir=data_dir,
                             nan_value=float(config.nan_value), pool=config.pool, standardize=config.standardize,
                             iemocap_classes=config.iemocap_classes,
                             load_limit=parse_size(config.load_limit) if config.load_limit else None)


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
    """The run's selection metric must fit every dataset's task, and the final table's metric (``--metric``)
    must be a metric of at least one dataset's task; both are checked before any training."""
    tasks = {d.spec.task for d in datasets.values()}
    for name, data in datasets.items():
        try:
            plan.selection.metric_for(data.spec.task)
        except ValueError as exc:
            raise ValueError(f"{exc} (dataset {name})") from None
    if table_metric is not None:
        spec = METRICS.get(table_metric)
        if spec.task not in tasks:
            valid = sorted(n for n, m in METRICS.entries() if m.task in tasks)
            raise ValueError(f"--metric {table_metric} is a {spec.task} metric but this run's datasets are "
                             f"{', '.join(sorted(tasks))}; valid: {', '.join(valid)}")


def resolve_reference(config: RunConfig, methods: list[str]) -> str | None:
    """The run's reference method: named (``--reference NAME``, which must be in the run), none, or ``auto``: the
    run's method whose card declares ``reference=True`` (none if no such method runs)."""
    if config.reference == "none":
        return None
    if config.reference == "auto":
        declared = [m for m in methods if METHODS.get(m).card.reference]
        return declared[0] if declared else None
    if config.reference not in methods:
        raise ValueError(f"--reference {config.reference!r} is not one of this run's methods "
                         f"({', '.join(methods)}); use auto, none or one of them")
    return config.reference


def prepare(config: RunConfig) -> Plan:
    """Resolve and validate every name and option; no data is loaded and nothing is trained."""
    builtins.load()
    for module in config.plugins:
        import_plugin(module)
    methods = METHODS.resolve(config.methods)
    check_global_options(config.method_options, methods)
    configs = {m: method_config(m, config.method_options, config.backbone, config.backbone_options)
               for m in methods}
    selection = Selection(config.select, config.select_metric)
    datasets = parse_datasets(config)
    # A glob never selects the held-out validation family (tuning only); naming it is refused by ``expand``.
    protocols = [PROTOCOLS.get(p) for p in PROTOCOLS.resolve(config.protocols)
                 if p in config.protocols or not PROTOCOLS.get(p).held_out]
    out = Path(config.out).expanduser() if config.out else default_out_dir(config.identity_hash())
    device = resolve_device(config.device, here=config.executor != "ray")
    plan = Plan(config, methods, datasets, protocols, configs, device, out,
                explicit_protocols={p for p in config.protocols if p in PROTOCOLS}, selection=selection,
                reference=resolve_reference(config, methods))
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
        warn_absent_classes(name, data)
        for split in ("train", "valid", "test"):
            if len(data.split(split)) < 2:
                log.warning("%s: the %s split holds %d sample(s); spreads and correlations over it are undefined "
                            "and the report says so", name, split, len(data.split(split)))
        loaded[name] = data
    return loaded


def warn_absent_classes(name: str, data: Dataset) -> None:
    """UA over the class list is undefined on a split that lacks a class: say so when the data are loaded."""
    if data.spec.task != "classification":
        return
    for split in ("valid", "test"):
        y = data.split(split).y
        absent = [c for k, c in enumerate(data.spec.classes) if not bool((y == k).any())]
        if absent:
            log.warning("%s: the %s split has no sample of class(es) %s, so UA over the %d classes is undefined "
                        "(NaN) there; WA and F1 are still computed", name, split, ", ".join(absent),
                        len(data.spec.classes))


@dataclass
class Loaded:
    """What a process of a run holds after :func:`prepare_process`: the plan, the datasets (on the CPU) and each
    training split's feature statistics. Loaded once per process and shared by every unit it runs."""

    plan: Plan
    datasets: dict[str, Dataset]
    stats: dict[str, FeatureStats]


def prepare_process(config: RunConfig, shared: tuple[dict[str, Dataset], dict[str, FeatureStats]] | None = None
                    ) -> Loaded:
    """What every process of a run does first (the driver and each worker): plan, set threads, load the data.

    ``shared``: datasets and statistics the driver already loaded (worker processes receive them through shared
    memory instead of loading or regenerating them once more)."""
    plan = prepare(config)
    # The models are tiny: intra-op threads mostly wait on each other, and with other processes on the machine
    # OpenMP's spinning made a CPU cell 30x slower in our measurements. One thread per process by default.
    torch.set_num_threads(config.threads)
    if plan.device.type == "cuda":  # TF32 matmuls on a GPU, in every process of the run (execution.tf32 per cell)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if shared is not None:
        return Loaded(plan, *shared)
    datasets = load_datasets(plan)
    stats = {n: FeatureStats.from_batch(d.train) for n, d in datasets.items()}  # on CPU: device-independent
    return Loaded(plan, datasets, stats)


def group_cells(plan: Plan, cells: list[Cell], stack: int, stackable: dict[str, bool]) -> list[WorkUnit]:
    """Units of work for ``cells`` (in plan order): seed groups of at most ``stack`` cells for the methods that
    stack (``stackable[method]``), single cells otherwise. ``stack`` 1 gives one unit per cell."""
    units: list[WorkUnit] = []
    by_key: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        by_key.setdefault((cell.dataset, cell.method), []).append(cell)
    for (_, method), group in by_key.items():
        size = stack if stackable.get(method, False) and stack > 1 else 1
        units += [WorkUnit(tuple(group[i:i + size])) for i in range(0, len(group), size)]
    return units
