"""The training loop both MMIN stages share: the standard loop's machinery (device-resident index batches from the
cell's generator, one host sync per epoch, selection on validation with ``Selector``) plus the reference's
learning-rate schedule and per-sub-network gradient clipping, which ``standard_fit`` does not have."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from harness.data import Batch
from harness.registry import METRICS
from harness.training import FitContext, NonFiniteLossError, Selector, minibatches

LossTerms = Callable[[Batch, torch.Generator], dict[str, Tensor]]  # must contain "loss"; other terms are logged


@dataclass(frozen=True)
class Stage:
    """One stage's recipe: ``epochs`` with the linear-decay tail ``decay_fraction``, per-group ``grad_clip``, Adam's
    ``beta1``; ``offset`` / ``total`` place its epochs in the cell's progress report."""

    name: str
    epochs: int
    decay_fraction: float
    grad_clip: float
    beta1: float
    offset: int = 0
    total: int = 0


@dataclass
class StageResult:
    name: str
    select_metric: str
    best_epoch: int
    best_value: float
    epochs_run: int
    time_s: float
    history: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "history"}


def lr_factor(epoch: int, epochs: int, decay_fraction: float) -> float:
    """Multiplier of the base learning rate in 0-based ``epoch``: 1 for the first ``epochs - D`` epochs, then
    ``1 - k / (D + 1)`` in the k-th of the last ``D = round(decay_fraction * epochs)`` (reference: ``tools.py``)."""
    decay = round(decay_fraction * epochs)
    return 1.0 - max(0, epoch + 1 - (epochs - decay)) / (decay + 1)


def incomplete_patterns(n_mod: int) -> Tensor:
    """Bool ``[2^M - 2, M]``: every non-empty proper subset of the modalities kept, smaller subsets first."""
    rows = [[j in c for j in range(n_mod)] for k in range(1, n_mod) for c in combinations(range(n_mod), k)]
    return torch.tensor(rows, dtype=torch.bool).view(-1, n_mod)


def pattern_scorer(valid: Batch, patterns: Tensor, metric: str) -> Callable[[nn.Module], float]:
    """Validation score = ``metric`` averaged over ``patterns`` (the split replicated once per pattern, as the
    reference does; for MAE and UA the mean over patterns equals the reference's pooled value)."""
    stacked = Batch.cat([valid.drop(p) for p in patterns])
    target, n, fn = valid.y.cpu().numpy(), len(valid), METRICS.get(metric)

    def score(model: nn.Module) -> float:
        pred = model.predict(stacked).cpu().numpy()
        return float(np.mean([fn(pred[k * n:(k + 1) * n], target) for k in range(len(patterns))]))

    return score


def train_stage(model: Any, loss_terms: LossTerms, groups: list[nn.Module], train: Batch, ctx: FitContext,
                stage: Stage, metric: str, score: Callable[[nn.Module], float]) -> StageResult:
    """Train ``model``'s trainable parameters with ``loss_terms``; keep the epoch best by ``score`` (validation)."""
    cfg = model.config
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(stage.beta1, 0.999), weight_decay=cfg.weight_decay)
    sel, history, start = Selector(metric, cfg.patience), [], time.perf_counter()
    for epoch in range(stage.epochs):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(epoch, stage.epochs, stage.decay_fraction)
        model.train()
        sums: dict[str, Tensor] = {}
        batches = minibatches(len(train), cfg.batch_size, ctx.generator, ctx.device)
        for idx in batches:
            terms = loss_terms(train.index(idx), ctx.generator)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if stage.grad_clip > 0:
                for g in groups:  # the reference clips each sub-network on its own
                    nn.utils.clip_grad_norm_(g.parameters(), stage.grad_clip)
            opt.step()
            for k, v in terms.items():
                sums[k] = sums[k] + v.detach() if k in sums else v.detach()
        means = dict(zip(sums, (torch.stack(list(sums.values())) / len(batches)).tolist(), strict=True))  # 1 sync
        if not all(math.isfinite(v) for v in means.values()):
            raise NonFiniteLossError(f"non-finite training loss in {stage.name} epoch {epoch}: {means}")
        value = score(model)
        history.append({"epoch": epoch, "lr": opt.param_groups[0]["lr"], **{f"train_{k}": v for k, v in
                        means.items()}, f"valid_{metric}": value})
        ctx.on_epoch(stage.offset + epoch + 1, stage.total or stage.epochs)
        if sel.update(model, epoch, value):
            break
    sel.restore(model)
    return StageResult(stage.name, metric, sel.best_epoch, sel.best_value, len(history),
                       time.perf_counter() - start, history)
