"""The standard training loop: train on the train split, select the checkpoint on the valid split only.

Data stay resident on the device and mini-batches are index tensors (no DataLoader on the hot path); the loss is
accumulated on the device and checked for NaN/inf once per epoch, so a step never waits for the host.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from harness.data import Batch, Dataset
from harness.registry import METRICS

if TYPE_CHECKING:
    from baselines.base import Method, MethodConfig

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the cell is recorded as failed with this message."""


@dataclass
class FitContext:
    """What the runner hands a method's ``fit``: the device, the cell's generator and seed, a progress hook."""

    device: torch.device
    generator: torch.Generator
    seed: int
    on_epoch: Callable[[int, int], None] = lambda epoch, total: None


@dataclass
class FitResult:
    """What training did: the selected epoch and its validation value, the per-epoch history, timing."""

    select_metric: str
    best_epoch: int
    best_value: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    train_time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_select_metric(config: MethodConfig, task: str) -> str:
    name = config.select_metric
    if name == "auto":
        name = "mae" if task == "regression" else "ua"
    spec = METRICS.get(name)
    if spec.task != task:
        raise ValueError(f"select_metric {name!r} is a {spec.task} metric but the dataset task is {task}")
    return name


def make_optimizer(params: Any, config: MethodConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def minibatches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> list[Tensor]:
    """A shuffled epoch as index tensors on ``device`` (the permutation is drawn from the cell's generator)."""
    perm = torch.randperm(n, generator=generator, device=generator.device).to(device)
    return list(perm.split(batch_size))


@torch.no_grad()
def predict(model: nn.Module, batch: Batch, chunk: int) -> Tensor:
    """Eval-mode forward over ``batch`` in chunks; restores the previous train/eval mode."""
    was_training = model.training
    model.eval()
    try:
        outs = [model(batch.index(idx)) for idx in torch.arange(len(batch), device=batch.device).split(chunk)]
    finally:
        model.train(was_training)
    return torch.cat(outs).float()


def validation_score(model: Method, valid: Batch, metric: str) -> float:
    pred = model.predict(valid)
    return METRICS.get(metric)(pred.cpu().numpy(), valid.y.cpu().numpy())


class Selector:
    """Keeps the best state by a validation metric (direction from the metric spec) and counts patience."""

    def __init__(self, metric: str, patience: int) -> None:
        self.metric, self.patience = metric, patience
        self.higher = METRICS.get(metric).higher_is_better
        self.best_value, self.best_epoch, self.best_state, self.bad = -math.inf, -1, None, 0
        if not self.higher:
            self.best_value = math.inf

    def update(self, model: nn.Module, epoch: int, value: float) -> bool:
        """Record ``value`` for ``epoch``; return True when training should stop (patience exhausted)."""
        better = math.isfinite(value) and (value > self.best_value if self.higher else value < self.best_value)
        if better or self.best_state is None:
            self.best_value, self.best_epoch, self.bad = value, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad += 1
        return self.bad >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def check_finite(total: Tensor, epoch: int) -> float:
    """One host sync per epoch: the summed training loss must be finite."""
    value = float(total)
    if not math.isfinite(value):
        raise NonFiniteLossError(f"non-finite training loss ({value}) in epoch {epoch}")
    return value


def standard_fit(model: Method, data: Dataset, ctx: FitContext) -> FitResult:
    """Train ``model`` with its ``training_loss``; keep the state that is best on ``data.valid``."""
    cfg = model.config
    metric = resolve_select_metric(cfg, data.spec.task)
    opt = make_optimizer(model.parameters(), cfg)
    sel, history, start = Selector(metric, cfg.patience), [], time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        total = torch.zeros((), device=ctx.device)
        batches = minibatches(len(data.train), cfg.batch_size, ctx.generator, ctx.device)
        for idx in batches:
            loss = model.training_loss(data.train.index(idx), ctx.generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total += loss.detach()
        train_loss = check_finite(total, epoch) / len(batches)
        value = validation_score(model, data.valid, metric)
        history.append({"epoch": epoch, "train_loss": train_loss, f"valid_{metric}": value})
        ctx.on_epoch(epoch + 1, cfg.epochs)
        if sel.update(model, epoch, value):
            break
    sel.restore(model)
    return FitResult(metric, sel.best_epoch, sel.best_value, len(history), history, time.perf_counter() - start)
