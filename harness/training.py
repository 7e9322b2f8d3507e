"""The one training loop. Every method trains through :func:`fit`; a method supplies its steps as hooks.

A method yields :class:`Stage` s (``Method.stages``): one for most methods, two for MMIN (teacher, then MMIN).
For each stage the loop owns the epochs, the learning-rate schedule, the optimizer step and gradient clipping,
the once-per-epoch finite check, selection on the validation split with patience (early stopping) and the
restore of the best state, progress and history. The method's hook (``Stage.step``) computes one mini-batch's
loss (and may ask for work right after the backward pass or the optimizer step, e.g. ModalImmune's curvature
gate and bandit update); ``Stage.end_epoch`` runs once per epoch before validation (e.g. ModalImmune's BHGD).

Data stay resident on the device and mini-batches are index tensors (no DataLoader on the hot path); loss terms
are accumulated on the device and checked once per epoch, so a step never waits for the host. A model's loop
state (optimizer, :class:`Selector`, history) is explicit and per model, so several models can share one loop.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from harness.data import Batch, Dataset
from harness.registry import METRICS
from harness.selection import Scorer, Selection

if TYPE_CHECKING:
    from baselines.base import Method

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the cell is recorded as failed with this message."""


@dataclass
class FitContext:
    """What the runner hands a method's ``fit``: the device, the cell's generator and seed, the run's selection
    rule and a progress hook ``on_epoch(epochs_done, epochs_planned)``."""

    device: torch.device
    generator: torch.Generator
    seed: int
    on_epoch: Callable[[int, int], None] = lambda epoch, total: None
    selection: Selection = field(default_factory=Selection)

    def scorer(self, data: Dataset, policy: str | None = None) -> Scorer:
        """The validation scorer of the run's selection (or of ``policy``, for an internal stage such as MMIN's
        full-modality teacher)."""
        return Scorer(data.valid, policy or self.selection.policy, self.selection.metric_for(data.spec.task))


@dataclass(frozen=True)
class Budget:
    """How long and how a stage trains: epochs with early stopping after ``patience`` epochs without a better
    validation score, mini-batch size, optimizer (Adam/AdamW with ``beta1``), base learning rate and schedule,
    weight decay, gradient-norm clipping (0: none)."""

    epochs: int
    patience: int
    batch_size: int
    optimizer: str = "adamw"
    beta1: float = 0.9
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    decay_fraction: float = 0.5
    grad_clip: float = 1.0


@dataclass
class StepOut:
    """What a step hook returns: ``loss`` (0-d) to back-propagate, extra ``terms`` to log (epoch means), and
    optional callbacks run right after ``backward`` (before clipping) and right after the optimizer step."""

    loss: Tensor
    terms: Mapping[str, Tensor] = field(default_factory=dict)
    after_backward: Callable[[], None] | None = None
    after_step: Callable[[], None] | None = None


@dataclass
class Stage:
    """One training phase: ``module``'s trainable parameters (or ``param_groups``) are optimised by ``step`` on
    mini-batches of the training split within ``budget``; ``score`` (validation only) selects the epoch whose
    state is restored. ``clip_groups``: modules whose gradients are clipped separately (default: all at once)."""

    name: str
    module: nn.Module
    step: Callable[[Batch, torch.Generator], StepOut]
    budget: Budget
    score: Callable[[Any], float]
    param_groups: list[dict[str, Any]] | None = None
    clip_groups: list[nn.Module] | None = None
    end_epoch: Callable[[int], None] | None = None
    on_optimizer: Callable[[torch.optim.Optimizer], None] | None = None  # sees the loop's optimizer (its lr)

    @property
    def metric(self) -> str:
        return getattr(self.score, "metric", "score")

    @property
    def policy(self) -> str:
        return getattr(self.score, "policy", "custom")


@dataclass
class StageResult:
    name: str
    select_metric: str
    selection_policy: str
    best_epoch: int
    best_value: float
    epochs_run: int
    time_s: float
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "history"}


@dataclass
class FitResult:
    """What training did: the selected epoch and its validation value (of the last stage, whose model is the
    method's), the per-epoch history, timing and each stage's summary in ``extra["stages"]``."""

    select_metric: str
    best_epoch: int
    best_value: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    train_time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    selection_policy: str = "complete"


def make_optimizer(groups: Any, budget: Budget) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if budget.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=budget.lr, betas=(budget.beta1, 0.999), weight_decay=budget.weight_decay)


def lr_factor(budget: Budget, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Multiplier of each parameter group's base learning rate before step ``step`` of 0-based ``epoch``.

    ``constant``: 1. ``cosine``: ``(1 + cos(pi t / T)) / 2`` over all ``T`` steps of the budget (as
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` to 0). ``linear_decay`` (MMIN's reference ``lr_policy=
    'linear'``): 1 for the first ``E - D`` epochs, then ``1 - k / (D + 1)`` in the k-th of the last
    ``D = round(decay_fraction * E)`` epochs.
    """
    if budget.lr_schedule == "cosine":
        t = epoch * steps_per_epoch + step
        return 0.5 * (1.0 + math.cos(math.pi * t / max(1, budget.epochs * steps_per_epoch)))
    if budget.lr_schedule == "linear_decay":
        decay = round(budget.decay_fraction * budget.epochs)
        return 1.0 - max(0, epoch + 1 - (budget.epochs - decay)) / (decay + 1)
    return 1.0


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


class Selector:
    """One model's selection state: the best validation value, its epoch and state, epochs without improvement."""

    def __init__(self, metric: str, patience: int) -> None:
        self.metric, self.patience = metric, patience
        self.higher = METRICS.get(metric).higher_is_better if metric in METRICS else False
        self.best_value, self.best_epoch, self.best_state, self.bad = -math.inf, -1, None, 0
        if not self.higher:
            self.best_value = math.inf

    def better(self, value: float) -> bool:
        return math.isfinite(value) and (value > self.best_value if self.higher else value < self.best_value)

    def update(self, model: nn.Module, epoch: int, value: float) -> bool:
        """Record ``value`` for ``epoch``; return True when training should stop (patience exhausted)."""
        if self.better(value) or self.best_state is None:
            self.best_value, self.best_epoch, self.bad = value, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad += 1
        return self.bad >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def check_finite(sums: Mapping[str, Tensor], steps: int, where: str) -> dict[str, float]:
    """One host sync per epoch: the epoch means of the loss terms, which must all be finite."""
    if not sums:
        return {}
    means = dict(zip(sums, (torch.stack([v.float() for v in sums.values()]) / max(1, steps)).tolist(), strict=True))
    if not all(math.isfinite(v) for v in means.values()):
        raise NonFiniteLossError(f"non-finite training loss in {where}: {means}")
    return means


def clip(groups: list[list[Tensor]], max_norm: float) -> None:
    if max_norm > 0:
        for params in groups:
            nn.utils.clip_grad_norm_(params, max_norm)


def train_stage(stage: Stage, train: Batch, ctx: FitContext, offset: int = 0, planned: int = 0) -> StageResult:
    """Run ``stage`` to its end (budget or patience) and restore its best validation state."""
    b, module = stage.budget, stage.module
    groups = stage.param_groups or [{"params": [p for p in module.parameters() if p.requires_grad]}]
    opt = make_optimizer(groups, b)
    if stage.on_optimizer is not None:
        stage.on_optimizer(opt)
    base_lr = [g["lr"] for g in opt.param_groups]
    clip_params = [[p for p in m.parameters() if p.requires_grad] for m in (stage.clip_groups or [module])]
    sel, history, start = Selector(stage.metric, b.patience), [], time.perf_counter()
    steps = math.ceil(len(train) / b.batch_size)
    for epoch in range(b.epochs):
        module.train()
        sums: dict[str, Tensor] = {}
        for i, idx in enumerate(minibatches(len(train), b.batch_size, ctx.generator, ctx.device)):
            factor = lr_factor(b, epoch, i, steps)
            for g, lr in zip(opt.param_groups, base_lr, strict=True):
                g["lr"] = lr * factor
            out = stage.step(train.index(idx), ctx.generator)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            if out.after_backward is not None:
                out.after_backward()
            clip(clip_params, b.grad_clip)
            opt.step()
            if out.after_step is not None:
                out.after_step()
            for k, v in {"loss": out.loss, **out.terms}.items():
                sums[k] = sums[k] + v.detach() if k in sums else v.detach()
        means = check_finite(sums, steps, f"{stage.name} epoch {epoch}")
        if stage.end_epoch is not None:
            stage.end_epoch(epoch)
        value = stage.score(module)
        history.append({"epoch": epoch, "lr": opt.param_groups[0]["lr"],
                        **{f"train_{k}": v for k, v in means.items()}, f"valid_{stage.metric}": value})
        ctx.on_epoch(offset + epoch + 1, planned or b.epochs)
        if sel.update(module, epoch, value):
            break
    sel.restore(module)
    return StageResult(stage.name, stage.metric, stage.policy, sel.best_epoch, sel.best_value, len(history),
                       time.perf_counter() - start, history)


def fit(method: Method, data: Dataset, ctx: FitContext) -> FitResult:
    """Train ``method`` through each of its stages in turn; the last stage's selection is the method's."""
    planned, done, results = method.planned_epochs(), 0, []
    start = time.perf_counter()
    stages: Iterator[Stage] = method.stages(data, ctx)
    for stage in stages:
        results.append(train_stage(stage, data.train, ctx, offset=done, planned=planned))
        done += results[-1].epochs_run
    last = results[-1]
    extra = {"stages": {r.name: r.summary() for r in results}}
    if len(results) > 1:
        extra["stage_history"] = {r.name: r.history for r in results[:-1]}
    return FitResult(last.select_metric, last.best_epoch, last.best_value, last.epochs_run, last.history,
                     time.perf_counter() - start, extra, last.selection_policy)
