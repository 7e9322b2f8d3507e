"""The method contract. A method is an ``nn.Module`` built from a dataset spec and a frozen config.

Tensor conventions (see ``harness.data.Batch``): inputs ``x[m]`` are float32 ``[N, T_m, D_m]`` with
``lengths[m]`` int64 ``[N]`` and availability ``present`` bool ``[N, M]``. ``forward`` must accept *any*
``present`` mask (including rows with a single available modality) and returns

- regression: float ``[N]`` predictions on the label scale;
- classification: float ``[N, C]`` logits.

A method never knows which evaluation protocol produced a batch: it sees only features and ``present``.

Simple methods implement ``forward`` (and maybe ``augment`` or ``training_loss``) and inherit the standard
training loop (``harness.training.standard_fit``: train on train, select on valid only). Methods with special
training (two stages, meta-updates) override ``fit`` and own their loop, under the same rules.

A method is usable unregistered: ``MyMethod(spec, MyMethod.Config())`` then ``fit`` and ``predict``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import types
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import harness.metrics  # noqa: F401  (registers the metrics that select_metric is checked against)
from harness.data import Batch, Dataset, DatasetSpec
from harness.registry import METRICS
from harness.training import FitContext, FitResult, predict, standard_fit

log = logging.getLogger(__name__)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every dataclass field of ``cls`` (``{}`` if they cannot be resolved, e.g. a
    plugin's annotation names a type imported only under ``TYPE_CHECKING``: its fields are then not type-checked)."""
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError) as exc:
        log.warning("%s: field annotations cannot be resolved (%s); field types are not checked", cls.__name__, exc)
        return {}
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name in hints}


def type_matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint``. Stricter than ``isinstance`` where Python is lax: a bool is
    not an int (``True`` would silently mean 1 epoch), a float field takes an int (``lr=1``), a ``Literal`` needs
    one of its options with the option's type, a ``tuple[X, ...]`` needs a tuple (not a list) of ``X``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin in (Union, types.UnionType):
        return any(type_matches(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(type_matches(v, args[0]) for v in value)
        return not args or (len(value) == len(args) and all(map(type_matches, value, args)))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)  # other generics (list[int], Mapping[...]): the container type only
    return isinstance(value, hint) if isinstance(hint, type) else True


def describe_type(hint: Any) -> str:
    """``hint`` as a reader would write it: ``int``, ``float (or int)``, ``one of 'late', 'early'``..."""
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if hint is float:
        return "float (or int)"
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


@dataclass(frozen=True)
class MethodConfig:
    """Knobs every method shares. Subclass (frozen) to add a method's own fields.

    ``select_metric`` is the validation metric used for early stopping and checkpoint selection;
    ``auto`` means ``mae`` for regression and ``ua`` for classification. The test split is never used here.

    Construction validates every field, so a bad value fails before training with an error naming the field:
    first its type against the annotation (``check_types``; subclasses' fields included, nothing to add), then
    its range (``check``; subclasses call ``super().__post_init__()`` first, then check their own fields).
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    patience: int = 8
    select_metric: str = "auto"
    grad_clip: float = 1.0
    regression_loss: str = "l1"
    hidden: int = 64
    dropout: float = 0.1
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        self.check_types()
        self.check("epochs", self.epochs >= 1, ">= 1")
        self.check("batch_size", self.batch_size >= 1, ">= 1")
        self.check("lr", self.lr > 0, "> 0")
        self.check("weight_decay", self.weight_decay >= 0, ">= 0")
        self.check("optimizer", self.optimizer in ("adam", "adamw"), "'adam' or 'adamw'")
        self.check("patience", self.patience >= 1, ">= 1")
        self.check("grad_clip", self.grad_clip >= 0, ">= 0 (0 disables clipping)")
        self.check("regression_loss", self.regression_loss in ("l1", "mse"), "'l1' or 'mse'")
        self.check("hidden", self.hidden >= 1, ">= 1")
        self.check("dropout", 0 <= self.dropout < 1, "in [0, 1)")
        self.check("eval_batch_size", self.eval_batch_size >= 1, ">= 1")
        self.check_select_metric()

    def check_types(self) -> None:
        """Raise a ``ValueError`` naming the first field whose value does not fit its annotation. Runs before any
        range check, so ``n_blocks="3"`` is reported as a wrong type, not as a ``TypeError`` from ``"3" >= 1``."""
        hints = field_types(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in hints and not type_matches(value, hints[f.name]):
                raise ValueError(f"{type(self).__name__}.{f.name} = {value!r} ({type(value).__name__}) is invalid; "
                                 f"expected {describe_type(hints[f.name])}")

    def check_select_metric(self) -> None:
        """``select_metric`` must be ``auto`` or a registered metric (whether it fits the dataset's task is checked
        when the run is planned, ``harness.runner.check_metrics``, since a config does not know its dataset)."""
        name = self.select_metric
        if name != "auto" and name not in METRICS:
            self.check("select_metric", False, f"'auto' or a registered metric. {METRICS.unknown_message(name)}")

    def check(self, name: str, ok: bool, valid: str) -> None:
        """Raise a ``ValueError`` naming the field, its value and the valid range unless ``ok``."""
        if not ok:
            raise ValueError(f"{type(self).__name__}.{name} = {getattr(self, name)!r} is invalid; valid: {valid}")


@dataclass(frozen=True)
class Reported:
    """One number a method's paper reports, with the conditions it was measured under."""

    dataset: str
    metric: str
    value: float
    condition: str = "full"
    protocol: str = "fixed_pattern"
    source: str = ""


@dataclass(frozen=True)
class MethodCard:
    """Paper, reference code and reported numbers, so reports can show reproduced beside reported. ``label``
    names the method in figures and paper tables (reports fall back to the registry name when it is empty)."""

    paper: str
    url: str = ""
    code: str = ""
    reported: tuple[Reported, ...] = ()
    notes: str = ""
    label: str = ""


class Method(nn.Module, ABC):
    """Base class of every method. Subclasses set ``Config`` and ``card`` and implement ``forward``."""

    Config: ClassVar[type[MethodConfig]] = MethodConfig
    card: ClassVar[MethodCard] = MethodCard(paper="")

    def __init__(self, spec: DatasetSpec, config: MethodConfig) -> None:
        super().__init__()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.spec = spec
        self.config = config

    @abstractmethod
    def forward(self, batch: Batch) -> Tensor:
        """Predictions: ``[N]`` (regression) or logits ``[N, C]`` (classification), for any ``present``."""

    def task_loss(self, out: Tensor, y: Tensor) -> Tensor:
        """Mean task loss: L1 or MSE for regression (``config.regression_loss``), cross-entropy otherwise."""
        if self.spec.task == "classification":
            return F.cross_entropy(out, y)
        return F.l1_loss(out, y) if self.config.regression_loss == "l1" else F.mse_loss(out, y)

    def augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Training-time input transform (e.g. modality dropout); identity by default. Never used at eval."""
        return batch

    def training_loss(self, batch: Batch, generator: torch.Generator) -> Tensor:
        """The scalar loss of one standard training step on ``batch``."""
        batch = self.augment(batch, generator)
        return self.task_loss(self(batch), batch.y)

    def fit(self, data: Dataset, ctx: FitContext) -> FitResult:
        """Train on ``data.train`` and select on ``data.valid``; override for special training."""
        return standard_fit(self, data, ctx)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        """Eval-mode predictions in chunks of ``config.eval_batch_size``, as float32 on the batch's device."""
        return predict(self, batch, self.config.eval_batch_size)

    def diagnostics(self) -> dict[str, Any]:
        """Method-specific diagnostics stored with the cell (bandit counts, gate fractions...); none by default."""
        return {}
