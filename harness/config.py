"""One frozen config per run and per method.

Precedence: command line > config file (TOML) > defaults, merging only the options the user actually gave.
Unknown keys are errors that list the valid keys. The resolved config is saved in ``run.json``.

A config file looks like::

    methods = ["vanilla_fusion", "modality_dropout"]
    datasets = ["synth-mosi"]
    seeds = [0, 1, 2]
    [method_options."*"]          # every method
    epochs = 20
    [method_options.vanilla_fusion]
    hidden = 128
    [backbone_options]            # the shared backbone every method uses (unless backbone = "paper")
    epochs = 40
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from harness.registry import METHODS

# execution details that do not change what is computed
IDENTITY_EXCLUDED = ("out", "device", "plugins", "threads", "workers", "executor", "reference", "stack", "compile",
                     "ray_address", "gpus_per_task", "max_retries", "ray_data", "load_limit")
# The standard protocol set (docs/protocols.md): fixed missing-modality patterns (MMIN Table 3), the missing rate
# as GCNet/CPM-Net realise it (ModalImmune Table 4) and feature noise, the three families papers report most, and
# fast enough for the default demo. ``--protocols all`` selects every test protocol.
STANDARD_PROTOCOLS = ("fixed_pattern", "missing_rate", "noise")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. ``datasets`` entries are ``name`` or ``name=PATH``.

    ``nan_value``, ``pool``, ``standardize`` and ``iemocap_classes`` are the data options of
    :class:`harness.data.DataOptions` (they change the numbers, so they are part of the run identity).

    Fair comparison: ``select`` (``complete``, ``incomplete`` or ``all``, see :mod:`harness.selection`) and
    ``select_metric`` decide model selection for every method alike; ``backbone`` is ``shared`` (every method
    uses the run's backbone and budget: the backbone fields of ``MethodConfig``, overridden by
    ``backbone_options``) or ``paper`` (every method its paper's own settings); a single method opts out with the
    method option ``backbone = "paper"``. ``reference``: the method the others are tested against in reports
    (``auto``: the method whose card declares itself the reference; ``none``: no reference).
    """

    methods: tuple[str, ...] = ("all",)
    datasets: tuple[str, ...] = ("synth-mosi", "synth-iemocap")
    seeds: tuple[int, ...] = (0, 1, 2)
    preset: str = "small"
    protocols: tuple[str, ...] = STANDARD_PROTOCOLS
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    data_dir: str | None = None
    nan_value: float = 0.0
    pool: bool = False
    standardize: bool = True
    iemocap_classes: str = "4"
    out: str | None = None
    device: str = "auto"
    plugins: tuple[str, ...] = ()
    threads: int = 1
    workers: int = 0
    executor: str = "auto"
    stack: int = 0
    compile: bool = False
    select: str = "complete"
    select_metric: str = "auto"
    backbone: str = "shared"
    backbone_options: Mapping[str, Any] = field(default_factory=dict)
    reference: str = "auto"
    ray_address: str | None = None
    gpus_per_task: float = 0.0
    max_retries: int = 3
    ray_data: str = "store"
    load_limit: str | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            problem = type_problem(getattr(self, f.name), _HINTS[f.name])
            if problem:
                raise ValueError(f"{f.name} must be {problem}, got {getattr(self, f.name)!r}")
        if not self.seeds:
            raise ValueError("seeds: at least one seed is needed")
        if any(not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < 2**63 for s in self.seeds):
            raise ValueError(f"seeds must be non-negative integers below 2**63, got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per CPU core on CPU, 1 on a GPU), got {self.workers!r}")
        if not isinstance(self.executor, str) or not self.executor:
            raise ValueError(f"executor must be a name (auto, sequential, process), got {self.executor!r}")
        if not (isinstance(self.gpus_per_task, (int, float)) and 0 <= self.gpus_per_task <= 64):
            raise ValueError(f"gpus_per_task must be a number in [0, 64] (e.g. 0.5: two tasks share a GPU), "
                             f"got {self.gpus_per_task!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries!r}")
        if self.ray_data not in ("store", "path"):
            raise ValueError(f"ray_data must be store (the driver ships the data) or path (each worker loads it), "
                             f"got {self.ray_data!r}")
        if self.load_limit is not None:
            from harness.datasets.limits import parse_size

            parse_size(self.load_limit, "load_limit")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        for key in ("methods", "datasets", "protocols"):
            if not getattr(self, key):
                raise ValueError(f"{key}: the list is empty")
        for key in ("pool", "standardize"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be true or false, got {getattr(self, key)!r}")
        if isinstance(self.stack, bool) or not isinstance(self.stack, int) or self.stack < 0:
            raise ValueError(f"stack must be >= 0 (0 = auto: all seeds when stacking, else 1), got {self.stack!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true or false, got {self.compile!r}")
        if self.select not in ("complete", "incomplete", "all"):
            raise ValueError(f"select must be complete, incomplete or all, got {self.select!r}")
        if not isinstance(self.select_metric, str):
            raise ValueError(f"select_metric must be a metric name or auto, got {self.select_metric!r}")
        if self.backbone not in ("shared", "paper"):
            raise ValueError(f"backbone must be shared or paper, got {self.backbone!r}")
        if not isinstance(self.reference, str) or not self.reference:
            raise ValueError(f"reference must be a method name, auto or none, got {self.reference!r}")
        if isinstance(self.nan_value, bool) or not isinstance(self.nan_value, (int, float)):
            raise ValueError(f"nan_value must be a number, got {self.nan_value!r}")

    def identity(self) -> dict[str, Any]:
        """The part of the config that determines the results (a run directory holds exactly one identity)."""
        d = to_jsonable(self)
        return {k: v for k, v in d.items() if k not in IDENTITY_EXCLUDED}

    def identity_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:12]


_HINTS: dict[str, Any] = {}  # RunConfig's field annotations, resolved once below the class


def type_problem(value: Any, hint: Any) -> str | None:
    """What ``value`` should have been for a field annotated ``hint``, or None when it fits.

    Accepts what a TOML file or the library may give: a list or tuple for ``tuple[...]`` fields (a comma list
    string is split before this check), ints for floats, never a bool for a number or a number for a flag.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return None if value is None else type_problem(value, inner[0])
    if origin is tuple:
        item = args[0]
        word = {str: "strings", int: "integers"}.get(item, getattr(item, "__name__", str(item)))
        ok = isinstance(value, (tuple, list)) and all(type_problem(v, item) is None for v in value)
        return None if ok else f"a list of {word}"
    if (origin in (Mapping, dict) or hint is Mapping) and args and args[1] is Any:  # backbone_options: flat
        if not isinstance(value, Mapping):
            return "a table of backbone options, e.g. [backbone_options] epochs = 40"
        bad = [k for k, v in value.items() if not _option_value(v)]
        return None if not bad else f"a table of strings, numbers, true/false or lists of them ({bad[0]!r} is not)"
    if origin in (Mapping, dict) or hint is Mapping:
        problem = options_problem(value)
        return None if problem is None else f"{problem[1]} ({problem[0]} is {problem[2]!r})"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    return None


def options_problem(value: Any) -> tuple[str, str, Any] | None:
    """What is wrong with a ``method_options`` value (``{scope: {key: scalar or list of scalars}}``), as
    (which key, what it must be, what it is); None when it fits."""
    if not isinstance(value, Mapping):
        return "method_options", 'a table of options per method, e.g. [method_options."*"] epochs = 1', value
    for scope, opts in value.items():
        if not isinstance(opts, Mapping):
            return (f'method_options."{scope}"', f'a table of options, e.g. [method_options."{scope}"] epochs = 1',
                    opts)
        for k, v in opts.items():
            if not _option_value(v):
                return f'method_options."{scope}".{k}', "a string, number, true/false or a list of them", v
    return None


def _option_value(v: Any) -> bool:
    scalar = (str, int, float, bool)
    return isinstance(v, scalar) or (isinstance(v, (list, tuple)) and all(isinstance(x, scalar) for x in v))


_HINTS.update(typing.get_type_hints(RunConfig))


def to_jsonable(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


MAX_SEEDS = 1000  # a typo guard: 10^4 seeds of one cell is never a real plan


def parse_seeds(text: str) -> tuple[int, ...]:
    """``3`` means seeds 0, 1, 2; ``1,5,9`` lists them explicitly (``RunConfig`` checks the values)."""
    usage = "--seeds must be a count (e.g. 3) or a comma list (e.g. 0,1,2)"
    items = [s.strip() for s in text.split(",")]
    if len(items) > 1 and not all(items):
        raise ValueError(f"{usage}; the list {text!r} has an empty item")
    try:
        values = [int(s) for s in items]
    except ValueError:
        raise ValueError(f"{usage}, got {text!r}") from None
    if len(values) > 1:
        return tuple(values)
    n = values[0]
    if n < 1:
        raise ValueError(f"--seeds must be at least 1, got {n}")
    if n > MAX_SEEDS:
        raise ValueError(f"--seeds {n} is more than {MAX_SEEDS} seeds; give a smaller count or an explicit list")
    return tuple(range(n))


def split_list(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def load_config_file(path: Path) -> dict[str, Any]:
    """The TOML file's options, every key and value checked (one-line ``ValueError`` naming the file and key)."""
    where = f"Config file {path}"
    try:
        text = Path(path).read_bytes().decode("utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise ValueError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{where} is a directory, not a TOML file") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                         f"save it as UTF-8") from None
    except OSError as exc:
        raise ValueError(f"{where} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where} is not valid TOML: {exc}") from None
    check_keys(data, [f.name for f in dataclasses.fields(RunConfig)], f"config file {path}")
    for key, value in data.items():
        hint = _HINTS[key]
        listed = typing.get_origin(hint) is tuple
        if key == "method_options" and (bad := options_problem(value)):
            raise ValueError(f"{where}: {bad[0]} must be {bad[1]}, got {bad[2]!r}")
        if (listed and isinstance(value, str)) or (key == "seeds" and type(value) is int):
            continue  # a comma list ("a,b") or a seed count, as on the command line
        problem = type_problem(value, hint)
        if problem:
            extra = " or a comma-separated string" if listed and key != "seeds" else \
                " or a seed count" if key == "seeds" else ""
            raise ValueError(f"{where}: {key} must be {problem}{extra}, got {value!r}")
    return data


def check_keys(given: Mapping[str, Any], valid: list[str], where: str) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in {where}; valid keys: {sorted(valid)}")


BACKBONE_SCOPE = "backbone"  # ``--set backbone.KEY=VALUE`` sets the run's shared backbone
# Options that belong to the run, never to one method (so that every method is selected the same way).
RUN_LEVEL = {"select": "--select, or select in the config file",
             "select_metric": "--select-metric, or select_metric in the config file"}


def build_run_config(file: Path | None = None, **cli: Any) -> RunConfig:
    """Merge defaults < file < CLI; ``cli`` holds only options the user gave (None means not given)."""
    merged: dict[str, Any] = load_config_file(file) if file else {}
    from_file = set(merged)
    options = {k: dict(v) for k, v in merged.pop("method_options", {}).items()}
    backbone = dict(merged.pop("backbone_options", {}))
    backbone.update(options.pop(BACKBONE_SCOPE, {}))
    for key, value in cli.items():
        if key == "method_options":
            for scope, opts in (value or {}).items():
                target = backbone if scope == BACKBONE_SCOPE else options.setdefault(scope, {})
                target.update(opts)
        elif value is not None:
            merged[key] = value
    merged["backbone_options"] = backbone
    for key in ("methods", "datasets", "protocols", "plugins"):
        if isinstance(merged.get(key), str):
            merged[key] = split_list(merged[key])
    if isinstance(merged.get("seeds"), (str, int)):
        merged["seeds"] = parse_seeds(str(merged["seeds"]))
    merged = {k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()}
    try:
        return RunConfig(**merged, method_options=options)
    except ValueError as exc:  # say where a value the file gave (and the command line did not override) came from
        key = str(exc).split(" ", 1)[0].rstrip(":")
        if file is not None and key in from_file and cli.get(key) is None:
            raise ValueError(f"Config file {file}: {exc}") from None
        raise


def parse_set(items: list[str]) -> dict[str, dict[str, str]]:
    """``--set epochs=5`` (every method) or ``--set vanilla_fusion.hidden=128`` -> {scope: {key: value}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE or METHOD.KEY=VALUE, got {item!r}")
        scope, _, name = key.rpartition(".")
        out.setdefault(scope or "*", {})[name] = value
    return out


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a string from the command line (or a TOML value) to the field's declared type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _coerce(value, args[0], where)
    if origin is tuple:
        # "--set f=" is the empty tuple; "a,b" or a TOML list gives the items
        items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
        inner = typing.get_args(hint)[0]
        return tuple(_coerce(v, inner, where) for v in items)
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ValueError(f"{where} must be one of {typing.get_args(hint)}, got {value!r}")
        return value
    try:
        if not isinstance(value, str) and (isinstance(value, bool) != (hint is bool)) and hint in (bool, int, float):
            raise ValueError  # a TOML true for a number, or 0 for a flag, is a mistake, not a value to convert
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return value
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return hint(value) if hint in (int, float, str) else value
    except (TypeError, ValueError):
        raise ValueError(f"{where} expects {getattr(hint, '__name__', hint)}, got {value!r}") from None


def backbone_mode(method: str, options: Mapping[str, Mapping[str, Any]], default: str = "shared") -> str:
    """``paper`` or ``shared`` for ``method``: its own ``backbone`` option, else ``*``'s, else the run's."""
    for scope in (method, "*"):
        if "backbone" in options.get(scope, {}):
            return str(_coerce(options[scope]["backbone"], typing.Literal["shared", "paper"], f"{scope}.backbone"))
    return default


def check_backbone_options(backbone_options: Mapping[str, Any]) -> None:
    from baselines.base import BACKBONE_FIELDS

    check_keys(backbone_options, list(BACKBONE_FIELDS), "the backbone options (--set backbone.KEY=VALUE)")


def method_config(method: str, options: Mapping[str, Mapping[str, Any]], backbone: str = "shared",
                  backbone_options: Mapping[str, Any] | None = None) -> Any:
    """Build ``method``'s frozen config: its class defaults (the shared backbone's defaults), then either the run's
    ``backbone_options`` (mode ``shared``) or the method's ``paper`` settings (mode ``paper``, from the method's
    ``backbone`` option or the run's ``backbone``), then the ``*`` scope, then the method's own scope.

    Keys in the method's scope must be fields of its config; ``*`` keys apply where the field exists.
    """
    cls = METHODS.get(method).Config
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for scope in ("*", method):
        for key in set(options.get(scope, {})) & set(RUN_LEVEL):
            raise ValueError(f"{key} is a run option ({RUN_LEVEL[key]}), not a method option: every method of a "
                             f"run is selected the same way; remove it from the options for {scope!r}")
    check_keys(options.get(method, {}), names, f"options for method {method!r}")
    mode = backbone_mode(method, options, backbone)
    if mode == "paper":
        values: dict[str, Any] = {**cls.paper, "backbone": "paper"}
    else:
        check_backbone_options(backbone_options or {})
        values = {k: v for k, v in (backbone_options or {}).items() if k in names}
    values.update({k: v for k, v in options.get("*", {}).items() if k in names})
    values.update(options.get(method, {}))
    kwargs = {k: _coerce(v, hints[k], f"{method}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def check_global_options(options: Mapping[str, Mapping[str, Any]], methods: list[str]) -> None:
    """A ``*`` key must be a field of at least one selected method's config."""
    known = {f.name for m in methods for f in dataclasses.fields(METHODS.get(m).Config)} | set(RUN_LEVEL)
    check_keys(options.get("*", {}), sorted(known), "options for every method ('*')")
    for scope in options:
        if scope != "*" and scope not in methods:
            raise ValueError(f"Options given for method {scope!r}, which is not in this run's methods {methods}")


def default_out_dir(identity_hash: str) -> Path:
    """Where a run goes when ``--out`` is not given: ``$MIBENCH_HOME/runs/<hash>`` (default ~/.cache/mibench)."""
    home = os.environ.get("MIBENCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mibench"
    return Path(home) / "runs" / identity_hash
