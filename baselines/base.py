"""The method contract. A method is an ``nn.Module`` built from a dataset spec and a frozen config.

Tensor conventions (see ``harness.data.Batch``): inputs ``x[m]`` are float32 ``[N, T_m, D_m]`` with
``lengths[m]`` int64 ``[N]`` and availability ``present`` bool ``[N, M]``. ``forward`` must accept *any*
``present`` mask (including rows with a single available modality) and returns

- regression: float ``[N]`` predictions on the label scale;
- classification: float ``[N, C]`` logits.

A method never knows which evaluation protocol produced a batch: it sees only features and ``present``.

Every method trains through the one loop in ``harness.training`` (``fit``), which owns epochs, patience, early
stopping, selection on the validation split under the run's policy, best-state restore, the finite check,
progress and history. A method supplies its step(s) as hooks: simple methods implement ``forward`` (and maybe
``augment`` or ``training_loss``) and inherit the standard stage; methods with special training (two stages,
meta-updates) override ``stages`` and yield one :class:`~harness.training.Stage` per phase.

Backbone and budget: the fields in :data:`BACKBONE_FIELDS` are the same for every method of a run unless a
method is opted out (``backbone="paper"``): then the method's ``paper`` settings (its paper's own encoder,
sizes, loss and schedule, a class attribute of its config) replace them. The class defaults are the shared
backbone's defaults.

A method is usable unregistered: ``MyMethod(spec, MyMethod.Config())`` then ``fit`` and ``predict``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.data import Batch, Dataset, DatasetSpec
from harness.training import Budget, FitContext, FitResult, Stage, StepOut, fit, predict

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


# The fields a run's shared backbone sets for every method (``--set backbone.KEY=VALUE``): encoder families, sizes,
# regularisation, loss, and the training budget. Everything else in a config is the method's own.
BACKBONE_FIELDS = ("seq_encoder", "utt_encoder", "hidden", "embed", "dropout", "regression_loss", "batch_size",
                   "epochs", "patience", "optimizer", "lr", "weight_decay", "lr_schedule", "grad_clip")
BUDGET_FIELDS = ("epochs", "patience", "batch_size")
SEQ_ENCODERS = ("lstm", "bilstm", "lstm_maxpool")
SCHEDULES = ("constant", "cosine", "linear_decay")


@dataclass(frozen=True)
class MethodConfig:
    """Knobs every method shares. Subclass (frozen) to add a method's own fields.

    Backbone (one per run by default, :data:`BACKBONE_FIELDS`): ``seq_encoder`` for sequences (T > 1): ``lstm``
    (last valid state), ``bilstm`` (masked mean of a bidirectional LSTM) or ``lstm_maxpool`` (MMIN's
    unidirectional LSTM max-pooled over valid steps); ``utt_encoder`` for utterance-level features (T = 1):
    ``mlp``; ``hidden``/``embed`` widths; ``dropout``; ``regression_loss``. Budget: ``epochs``, ``patience``
    (early stopping on the validation score), ``batch_size``, ``optimizer`` (Adam or AdamW, ``beta1``),
    ``lr``, ``weight_decay``, ``lr_schedule`` (``constant``; ``cosine`` annealing over all steps;
    ``linear_decay`` over the last ``decay_fraction`` of the epochs, MMIN's reference policy), ``grad_clip``.

    ``backbone``: ``shared`` (the run's backbone) or ``paper`` (the method's ``paper`` settings replace the
    backbone fields; see the method's card and docs). Model selection (policy and metric) is a run option
    (``--select``, ``--select-metric``), never a method's: every method of a run is selected the same way.

    Construction validates every field, so a bad value fails before training with an error naming the field:
    first its type against the annotation (``check_types``; subclasses' fields included, nothing to add), then
    its range (``check``; subclasses call ``super().__post_init__()`` first, then check their own fields).
    """

    paper: ClassVar[Mapping[str, Any]] = {}

    backbone: Literal["shared", "paper"] = "shared"
    seq_encoder: Literal["lstm", "bilstm", "lstm_maxpool"] = "lstm"
    utt_encoder: Literal["mlp"] = "mlp"
    hidden: int = 64
    embed: int = 64
    dropout: float = 0.1
    regression_loss: Literal["l1", "mse"] = "l1"
    epochs: int = 30
    patience: int = 8
    batch_size: int = 64
    optimizer: Literal["adam", "adamw"] = "adamw"
    beta1: float = 0.9
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: Literal["constant", "cosine", "linear_decay"] = "constant"
    decay_fraction: float = 0.5
    grad_clip: float = 1.0
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        self.check_types()
        self.check("backbone", self.backbone in ("shared", "paper"), "'shared' or 'paper'")
        self.check("seq_encoder", self.seq_encoder in SEQ_ENCODERS, " or ".join(map(repr, SEQ_ENCODERS)))
        self.check("utt_encoder", self.utt_encoder == "mlp", "'mlp'")
        self.check("epochs", self.epochs >= 1, ">= 1")
        self.check("batch_size", self.batch_size >= 1, ">= 1")
        self.check("lr", self.lr > 0, "> 0")
        self.check("weight_decay", self.weight_decay >= 0, ">= 0")
        self.check("optimizer", self.optimizer in ("adam", "adamw"), "'adam' or 'adamw'")
        self.check("beta1", 0 <= self.beta1 < 1, "in [0, 1)")
        self.check("patience", self.patience >= 1, ">= 1")
        self.check("grad_clip", self.grad_clip >= 0, ">= 0 (0 disables clipping)")
        self.check("regression_loss", self.regression_loss in ("l1", "mse"), "'l1' or 'mse'")
        self.check("lr_schedule", self.lr_schedule in SCHEDULES, " or ".join(map(repr, SCHEDULES)))
        self.check("decay_fraction", 0 <= self.decay_fraction <= 1, "in [0, 1]")
        self.check("hidden", self.hidden >= 1, ">= 1")
        self.check("embed", self.embed >= 1, ">= 1")
        self.check("dropout", 0 <= self.dropout < 1, "in [0, 1)")
        self.check("eval_batch_size", self.eval_batch_size >= 1, ">= 1")

    def budget(self) -> Budget:
        """The training budget this config gives every stage (a stage may override single fields)."""
        return Budget(epochs=self.epochs, patience=self.patience, batch_size=self.batch_size,
                      optimizer=self.optimizer, beta1=self.beta1, lr=self.lr, weight_decay=self.weight_decay,
                      lr_schedule=self.lr_schedule, decay_fraction=self.decay_fraction, grad_clip=self.grad_clip)

    def backbone_record(self) -> dict[str, Any]:
        """What ``run.json`` records per cell as ``backbone``: the mode and every backbone field's value."""
        return {"mode": self.backbone, **{k: getattr(self, k) for k in BACKBONE_FIELDS if hasattr(self, k)}}

    def check_types(self) -> None:
        """Raise a ``ValueError`` naming the first field whose value does not fit its annotation. Runs before any
        range check, so ``n_blocks="3"`` is reported as a wrong type, not as a ``TypeError`` from ``"3" >= 1``."""
        hints = field_types(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in hints and not type_matches(value, hints[f.name]):
                raise ValueError(f"{type(self).__name__}.{f.name} = {value!r} ({type(value).__name__}) is invalid; "
                                 f"expected {describe_type(hints[f.name])}")

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
    reference: bool = False  # the no-robustness reference the others are tested against (one per run)
    label: str = ""


class Method(nn.Module, ABC):
    """Base class of every method. Subclasses set ``Config`` and ``card`` and implement ``forward``."""

    Config: ClassVar[type[MethodConfig]] = MethodConfig
    card: ClassVar[MethodCard] = MethodCard(paper="")
    # Seed groups of this method may train as one stacked computation (``harness.stacking``): true only for a
    # method whose layers run under ``torch.func.vmap`` and that trains with the standard stage.
    stackable: ClassVar[bool] = False

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

    def train_step(self, batch: Batch, generator: torch.Generator) -> StepOut:
        """The standard step's hook: the loss the loop back-propagates (it also clips and steps)."""
        return StepOut(self.training_loss(batch, generator))

    def stages(self, data: Dataset, ctx: FitContext) -> Iterator[Stage]:
        """The training phases, in order; each is run to completion by the loop before the next is asked for
        (a generator, so code after a ``yield`` runs once that stage is trained). Default: one standard stage of
        every parameter, selected by the run's policy."""
        yield Stage("train", self, self.train_step, self.config.budget(), ctx.scorer(data))

    def planned_epochs(self) -> int:
        """Epochs of all stages together, for progress reports."""
        return self.config.epochs

    def fit(self, data: Dataset, ctx: FitContext) -> FitResult:
        """Train on ``data.train`` and select on ``data.valid`` through the one loop (``harness.training.fit``)."""
        return fit(self, data, ctx)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        """Eval-mode predictions in chunks of ``config.eval_batch_size``, as float32 on the batch's device."""
        return predict(self, batch, self.config.eval_batch_size)

    def diagnostics(self) -> dict[str, Any]:
        """Method-specific diagnostics stored with the cell (bandit counts, gate fractions...); none by default."""
        return {}
