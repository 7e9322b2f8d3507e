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

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.data import Batch, Dataset, DatasetSpec
from harness.training import FitContext, FitResult, predict, standard_fit


@dataclass(frozen=True)
class MethodConfig:
    """Knobs every method shares. Subclass (frozen) to add a method's own fields.

    ``select_metric`` is the validation metric used for early stopping and checkpoint selection;
    ``auto`` means ``mae`` for regression and ``ua`` for classification. The test split is never used here.
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
    """Paper, reference code and reported numbers, so reports can show reproduced beside reported."""

    paper: str
    url: str = ""
    code: str = ""
    reported: tuple[Reported, ...] = ()
    notes: str = ""


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
