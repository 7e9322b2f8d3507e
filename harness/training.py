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
    # Several models in one computation (a stacked seed group, ``harness.stacking``): ``step`` then takes one
    # batch and one generator per member and returns losses ``[members]``, ``score`` a value per member, and
    # the group supplies per-member ``snapshot``/``restore`` of the state and per-member ``clip_members``.
    members: int = 1
    snapshot: Callable[[int], Any] | None = None
    restore: Callable[[int, Any], None] | None = None
    clip_members: Callable[[float], None] | None = None

    @property
    def metric(self) -> str:
        return getattr(self.score, "metric", "score")

    @property
    def policy(self) -> str:
        return getattr(self.score, "policy", "custom")


@dataclass
class StageResult:
    """One model's result of a stage; ``error`` is set when its loss became non-finite (its cell fails)."""

    name: str
    select_metric: str
    selection_policy: str
    best_epoch: int
    best_value: float
    epochs_run: int
    time_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("history", "error")}


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
    """One model's selection state: the best validation value, its epoch and state, epochs without improvement.
    ``snapshot()`` returns the state to keep (default: a copy of the module's ``state_dict``)."""

    def __init__(self, metric: str, patience: int) -> None:
        self.metric, self.patience = metric, patience
        self.higher = METRICS.get(metric).higher_is_better if metric in METRICS else False
        self.best_value, self.best_epoch, self.best_state, self.bad = -math.inf, -1, None, 0
        self.stopped = False
        if not self.higher:
            self.best_value = math.inf

    def better(self, value: float) -> bool:
        return math.isfinite(value) and (value > self.best_value if self.higher else value < self.best_value)

    def update(self, model: nn.Module | None, epoch: int, value: float,
               snapshot: Callable[[], Any] | None = None) -> bool:
        """Record ``value`` for ``epoch``; return True when training should stop (patience exhausted)."""
        if self.better(value) or self.best_state is None:
            self.best_value, self.best_epoch, self.bad = value, epoch, 0
            self.best_state = snapshot() if snapshot is not None else copy.deepcopy(model.state_dict())
        else:
            self.bad += 1
        self.stopped = self.bad >= self.patience
        return self.stopped

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def epoch_means(sums: Mapping[str, Tensor], steps: int, members: int) -> list[dict[str, float]]:
    """One host sync per epoch: each member's epoch means of the loss terms (``sums`` hold ``[]`` or ``[K]``)."""
    if not sums:
        return [{} for _ in range(members)]
    table = (torch.stack([v.float().reshape(members) for v in sums.values()], dim=1) / max(1, steps)).tolist()
    return [dict(zip(sums, row, strict=True)) for row in table]


def check_finite(sums: Mapping[str, Tensor], steps: int, where: str) -> dict[str, float]:
    """The epoch means of one model's loss terms, which must all be finite (else :class:`NonFiniteLossError`)."""
    means = epoch_means(sums, steps, 1)[0]
    if not all(math.isfinite(v) for v in means.values()):
        raise NonFiniteLossError(f"non-finite training loss in {where}: {means}")
    return means


def clip(groups: list[list[Tensor]], max_norm: float) -> None:
    if max_norm > 0:
        for params in groups:
            nn.utils.clip_grad_norm_(params, max_norm)


def train_stage(stage: Stage, train: Batch, ctx: FitContext, offset: int = 0, planned: int = 0) -> StageResult:
    """Run one model's ``stage`` to its end (budget or patience) and restore its best validation state."""
    result = train_members(stage, train, [ctx], offset, planned)[0]
    if result.error is not None:
        raise NonFiniteLossError(result.error)
    return result


def train_members(stage: Stage, train: Batch, ctxs: list[FitContext], offset: int = 0,
                  planned: int = 0) -> list[StageResult]:
    """The loop: run ``stage`` for its ``members`` models (one per context) and restore each one's best state.

    Each member has its own generator (data order and augmentation), selector (early stopping, best state) and
    finite check: a member whose loss becomes non-finite is failed alone, one whose patience runs out keeps its
    best state while the others go on, and the stage ends when every member has stopped or failed.
    """
    b, module, k_all = stage.budget, stage.module, stage.members
    groups = stage.param_groups or [{"params": [p for p in module.parameters() if p.requires_grad]}]
    opt = make_optimizer(groups, b)
    if stage.on_optimizer is not None:
        stage.on_optimizer(opt)
    base_lr = [g["lr"] for g in opt.param_groups]
    clip_params = [[p for p in m.parameters() if p.requires_grad] for m in (stage.clip_groups or [module])]
    sels = [Selector(stage.metric, b.patience) for _ in range(k_all)]
    histories: list[list[dict[str, float]]] = [[] for _ in range(k_all)]
    errors: list[str | None] = [None] * k_all
    start, steps = time.perf_counter(), math.ceil(len(train) / b.batch_size)
    for epoch in range(b.epochs):
        module.train()
        sums: dict[str, Tensor] = {}
        orders = [minibatches(len(train), b.batch_size, c.generator, c.device) for c in ctxs]
        for i, idx in enumerate(zip(*orders, strict=True)):
            factor = lr_factor(b, epoch, i, steps)
            for g, lr in zip(opt.param_groups, base_lr, strict=True):
                g["lr"] = lr * factor
            if k_all == 1:
                out = stage.step(train.index(idx[0]), ctxs[0].generator)
            else:
                out = stage.step([train.index(j) for j in idx], [c.generator for c in ctxs])
            opt.zero_grad(set_to_none=True)
            out.loss.sum().backward()
            if out.after_backward is not None:
                out.after_backward()
            if stage.clip_members is not None:
                stage.clip_members(b.grad_clip)
            else:
                clip(clip_params, b.grad_clip)
            opt.step()
            if out.after_step is not None:
                out.after_step()
            for key, v in {"loss": out.loss, **out.terms}.items():
                sums[key] = sums[key] + v.detach() if key in sums else v.detach()
        means = epoch_means(sums, steps, k_all)
        for k in range(k_all):
            if errors[k] is None and not all(math.isfinite(v) for v in means[k].values()):
                errors[k] = f"non-finite training loss in {stage.name} epoch {epoch}: {means[k]}"
        if all(e is not None for e in errors):
            break  # nothing left to validate (a single model fails here, before its end-of-epoch hooks)
        if stage.end_epoch is not None:
            stage.end_epoch(epoch)
        values = stage.score(module)
        values = [values] if k_all == 1 else list(values)
        for k in range(k_all):
            if errors[k] is not None or sels[k].stopped:
                continue  # a stopped member trains on with the group, but its selection is over
            histories[k].append({"epoch": epoch, "lr": opt.param_groups[0]["lr"],
                                 **{f"train_{t}": v for t, v in means[k].items()},
                                 f"valid_{stage.metric}": values[k]})
            snap = (lambda k=k: stage.snapshot(k)) if stage.snapshot is not None else None
            sels[k].update(module, epoch, values[k], snap)
            ctxs[k].on_epoch(offset + epoch + 1, planned or b.epochs)
        if all(e is not None or s.stopped for e, s in zip(errors, sels, strict=True)):
            break
    for k, sel in enumerate(sels):
        if errors[k] is None and sel.best_state is not None:
            stage.restore(k, sel.best_state) if stage.restore is not None else sel.restore(module)
    elapsed = time.perf_counter() - start
    return [StageResult(stage.name, stage.metric, stage.policy, sels[k].best_epoch, sels[k].best_value,
                        len(histories[k]), elapsed, histories[k], errors[k]) for k in range(k_all)]


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
