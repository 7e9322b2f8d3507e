"""Seed groups trained as one stacked computation: K copies of a method (one per seed) in one forward pass.

The K models' parameters are stacked (``torch.func.stack_module_state``, ``[K, ...]``) and one skeleton module
is evaluated over them with ``vmap(functional_call)``, so a step is a handful of large batched kernels instead of
K sequences of small ones. The one training loop (``harness.training.train_members``) runs the group; each member
keeps everything a separate run has:

- its own generator (the cell's), from which it draws its data order and its augmentation (``Method.augment``,
  outside ``vmap``) exactly as a separate run would; dropout masks come from a second per-member generator
  (``stable_seed("dropout", cell seed)``), drawn outside ``vmap`` with the shapes recorded once per batch size
  (:class:`MaskedDropout`), so a member's numbers never depend on which group it ran in;
- its own optimizer state (Adam/AdamW are elementwise, so one optimizer over the stacked tensors is K optimizers),
  gradient clipping on its own gradient norm, early stopping and best-state restore, and a finite check that
  fails only its cell.

A method stacks when it declares ``stackable = True``: its training is the standard stage (``augment`` then the
task loss of ``forward``) and its layers run under ``vmap``. LSTMs run as :func:`baselines.encoders.lstm_scan`
(``nn.LSTM``'s fused kernel has no batching rule). Evaluation of a group predicts every condition for all K
members in one batched pass per chunk.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from baselines.encoders import LSTMEncoder, LSTMMaxPoolEncoder
from harness.data import Batch
from harness.seeding import stable_seed, torch_generator
from harness.training import Stage, StepOut

_MASKS: dict[int, Tensor] = {}
_SHAPES: dict[int, tuple[int, ...]] | None = None


class MaskedDropout(nn.Module):
    """Dropout whose mask is supplied from outside (per member, drawn from the member's generator). In eval mode,
    or with p = 0, the identity; while shapes are being recorded it records its input shape."""

    def __init__(self, p: float, site: int) -> None:
        super().__init__()
        self.p, self.site = p, site

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if _SHAPES is not None:
            _SHAPES[self.site] = tuple(x.shape)
            return x
        return x * _MASKS[self.site]


@contextmanager
def masks(values: dict[int, Tensor]) -> Iterator[None]:
    global _MASKS
    previous, _MASKS = _MASKS, values
    try:
        yield
    finally:
        _MASKS = previous


def skeleton_of(model: nn.Module) -> tuple[nn.Module, list[MaskedDropout]]:
    """A copy of ``model`` whose LSTMs run as ``lstm_scan`` and whose dropouts take masks from outside."""
    skel = copy.deepcopy(model)
    sites: list[MaskedDropout] = []
    for module in list(skel.modules()):
        if isinstance(module, (LSTMEncoder, LSTMMaxPoolEncoder)):
            module.scan = True
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Dropout):
                site = MaskedDropout(child.p, len(sites))
                sites.append(site)
                setattr(module, name, site)
    return skel, sites


def stack_batches(batches: list[Batch]) -> tuple[dict, dict, Tensor, Tensor]:
    return ({m: torch.stack([b.x[m] for b in batches]) for m in batches[0].x},
            {m: torch.stack([b.lengths[m] for b in batches]) for m in batches[0].lengths},
            torch.stack([b.present for b in batches]), torch.stack([b.y for b in batches]))


class StackedGroup:
    """K models of one method as stacked parameters, trained and evaluated as one computation."""

    def __init__(self, models: list[nn.Module], seeds: list[int], compile: bool = False) -> None:
        self.models, self.members = models, len(models)
        self.params, self.buffers = stack_module_state(models)
        self.skeleton, self.sites = skeleton_of(models[0])
        self.dropout_gens = [torch_generator(stable_seed("dropout", s), _device(models[0])) for s in seeds]
        self.shapes: dict[int, dict[int, tuple[int, ...]]] = {}
        loss = vmap(self._loss, in_dims=(0, 0, 0, 0, 0, 0, 0))
        self.loss = torch.compile(loss) if compile else loss

    # -- the vmapped functions ----------------------------------------------------------------------------------
    def _forward(self, params: dict, buffers: dict, x: dict, lengths: dict, present: Tensor) -> Tensor:
        # ``forward`` never reads the labels (the contract), so the batch carries a placeholder for them
        return functional_call(self.skeleton, (params, buffers), (Batch(x, lengths, present, present[:, 0]),))

    def _loss(self, params: dict, buffers: dict, x: dict, lengths: dict, present: Tensor, y: Tensor,
              drop: dict[int, Tensor]) -> Tensor:
        with masks(drop):
            out = self._forward(params, buffers, x, lengths, present)
        return self.skeleton.task_loss(out, y)

    # -- training ------------------------------------------------------------------------------------------------
    def dropout_masks(self, batch: Batch) -> dict[int, Tensor]:
        """Per dropout site, ``[K, *shape]`` masks (scaled by 1/(1-p)) from each member's dropout generator."""
        live = [s for s in self.sites if s.p > 0]
        if not live:
            return {}
        n = len(batch)
        if n not in self.shapes:
            global _SHAPES
            _SHAPES = {}
            try:
                one = {k: v[0] for k, v in self.params.items()}
                with torch.no_grad():
                    functional_call(self.skeleton.train(), (one, {k: v[0] for k, v in self.buffers.items()}),
                                    (batch,))
                self.shapes[n] = _SHAPES
            finally:
                _SHAPES = None
        out = {}
        for s in live:
            shape = self.shapes[n][s.site]
            draws = [torch.rand(shape, generator=g, device=g.device) for g in self.dropout_gens]
            out[s.site] = (torch.stack(draws) >= s.p).to(self.params_dtype) / (1 - s.p)
        return out

    @property
    def params_dtype(self) -> torch.dtype:
        return next(iter(self.params.values())).dtype

    def step(self, batches: list[Batch], generators: list[torch.Generator]) -> StepOut:
        """Each member augments its own batch with its own generator (as a separate run would), then one vmapped
        forward and loss for all: losses ``[K]``."""
        batches = [m.augment(b, g) for m, b, g in zip(self.models, batches, generators, strict=True)]
        x, lengths, present, y = stack_batches(batches)
        return StepOut(self.loss(self.params, self.buffers, x, lengths, present, y, self.dropout_masks(batches[0])))

    def clip(self, max_norm: float) -> None:
        """``clip_grad_norm_`` per member: each member's gradient scaled by its own total norm (never mixed)."""
        if max_norm <= 0:
            return
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        norms = torch.stack([g.reshape(self.members, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))

    def snapshot(self, k: int) -> dict[str, Tensor]:
        return {n: p[k].detach().clone() for n, p in self.params.items()}

    def restore(self, k: int, state: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for n, p in self.params.items():
                p[k].copy_(state[n])

    # -- evaluation ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        """Eval-mode predictions of all members for one shared batch: ``[K, N]`` or ``[K, N, C]``."""
        self.skeleton.eval()
        fwd = vmap(self._forward, in_dims=(0, 0, None, None, None))
        chunk = self.models[0].config.eval_batch_size
        outs = []
        for idx in torch.arange(len(batch), device=batch.device).split(chunk):
            b = batch.index(idx)
            outs.append(fwd(self.params, self.buffers, dict(b.x), dict(b.lengths), b.present))
        return torch.cat(outs, dim=1).float()

    def write_back(self) -> None:
        """Copy each member's (restored best) parameters into its own model, for evaluation and records."""
        with torch.no_grad():
            for k, model in enumerate(self.models):
                for n, p in model.named_parameters():
                    p.copy_(self.params[n][k])

    def stage(self, budget: Any, score: Callable[[Any], list[float]]) -> Stage:
        return Stage("train", self.skeleton, self.step, budget, score,
                     param_groups=[{"params": list(self.params.values())}], members=self.members,
                     snapshot=self.snapshot, restore=self.restore, clip_members=self.clip)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class MemberScores:
    """The run's validation score for every member at once: one stacked ``predict`` of the scorer's batch."""

    def __init__(self, group: StackedGroup, scorer: Any) -> None:
        self.group, self.scorer = group, scorer
        self.metric, self.policy = scorer.metric, scorer.policy

    def __call__(self, _: Any) -> list[float]:
        pred = self.group.predict(self.scorer.batch).cpu().numpy()
        return [self.scorer.from_predictions(p) for p in pred]


def stackable(cls: type) -> bool:
    """Whether a method class stacks: it declares ``stackable = True`` and trains with the standard stage (its
    ``stages``, ``train_step`` and ``training_loss`` are the base class's, so augment + task loss is all)."""
    from baselines.base import Method

    return bool(getattr(cls, "stackable", False)) and all(
        getattr(cls, name) is getattr(Method, name) for name in ("stages", "train_step", "training_loss", "fit"))


def fit_group(models: list[Any], data: Any, ctxs: list[Any], compile: bool = False) -> tuple[StackedGroup, list]:
    """Train K models of one stackable method as one stacked computation through the one loop; returns the group
    (members written back into their models) and per member a ``FitResult`` or the error string of its cell."""
    from harness.training import FitResult, train_members

    cfg = models[0].config
    group = StackedGroup(models, [c.seed for c in ctxs], compile=compile)
    stage = group.stage(cfg.budget(), MemberScores(group, ctxs[0].scorer(data)))
    results = train_members(stage, data.train, ctxs, planned=cfg.epochs)
    group.write_back()
    fits = [r.error if r.error is not None else
            FitResult(r.select_metric, r.best_epoch, r.best_value, r.epochs_run, r.history, r.time_s,
                      {"stages": {r.name: r.summary()}}, r.selection_policy) for r in results]
    return group, fits
