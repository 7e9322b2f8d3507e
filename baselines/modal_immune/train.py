"""ModalImmune's training loop, Algorithm 1 of the paper, under mibench's rules (select on validation only).

Per mini-batch, with probability ``p_sdl`` an SDL step (§3.6 Eq. 6–8, §3.7–3.8, §3.10), otherwise a
reconstruction-driven step (Eq. 4–5); after every ``meta_every`` epochs a BHGD update of ξ = {λ, η, κ}
(§3.9). Host-side decisions (SDL or not, the bandit's arm) come from a numpy generator seeded from the cell;
device randomness from the cell's torch generator. The bandit's reward is the one host sync per SDL step.

Wall time per component (``diagnostics.seconds``), non-overlapping, so they add up to at most the training time:
``rec`` reconstruction steps (forward, backward, optimizer step); ``sdl`` SDL steps less the three parts below
(task forward, the one backward of L_SDL, including L_coll's backward, and the optimizer step); ``collapse`` the
forward of λ·L_coll; ``curvature_gate`` the λ_min estimate and rewriting the encoder's gradient; ``bandit`` the
arm choice, the two no-grad passes of ℓ_m* and the EXP3.P update; ``bhgd`` the ξ updates; ``eval`` the per-epoch
stable-rank probe and validation. Times are host clocks without device synchronisation (which would stall the
GPU), so on a GPU a component's queued kernels may be charged to the next host sync, the bandit's reward.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from baselines.modal_immune.bandit import Exp3P, InfoGainNormalizer
from baselines.modal_immune.collapse import batch_covariance, stable_rank
from baselines.modal_immune.curvature import apply_gate, collapse_curvature, gate
from baselines.modal_immune.losses import collapse_term, observe_info_gain, reconstruction_loss, sdl_task_loss
from baselines.modal_immune.meta import MetaState, inactive_reason, meta_step
from harness.data import Batch, Dataset
from harness.training import (
    FitContext,
    FitResult,
    Selector,
    check_finite,
    make_optimizer,
    minibatches,
    resolve_select_metric,
    validation_score,
)

if TYPE_CHECKING:
    from baselines.modal_immune import ModalImmune


PROPERTY = "net.property"  # the p_m matrix; ``net.property_proj`` (W of L_pe) is an ordinary layer


def param_groups(model: ModalImmune) -> list[dict[str, Any]]:
    """Optimizer groups: everything at ``lr`` first (the gate reads the encoder lr from group 0), then the property
    vectors p_m alone at ``property_lr`` (§4.2), matched by exact name."""
    c = model.config
    named = list(model.named_parameters())
    groups: list[dict[str, Any]] = [{"params": [p for n, p in named if n != PROPERTY], "lr": c.lr}]
    prop = [p for n, p in named if n == PROPERTY]
    if prop:
        groups.append({"params": prop, "lr": c.property_lr})
    return groups


class Trainer:
    """State of one ModalImmune training run; :meth:`run` is Algorithm 1."""

    def __init__(self, model: ModalImmune, data: Dataset, ctx: FitContext) -> None:
        c = self.c = model.config
        self.model, self.data, self.ctx = model, data, ctx
        self.rng = np.random.default_rng(ctx.seed)
        self.opt = make_optimizer(param_groups(model), c)  # Adam or AdamW as ``optimizer`` says
        self.steps_per_epoch = math.ceil(len(data.train) / c.batch_size)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, c.epochs * self.steps_per_epoch)
        horizon = max(1, round(c.p_sdl * c.epochs * self.steps_per_epoch))
        self.bandit = Exp3P(len(model.spec.modalities), horizon=horizon, gamma=c.bandit_gamma,
                            eta_mode=c.bandit_eta_mode, delta=c.bandit_delta)
        self.normalizer = InfoGainNormalizer(c.bandit_reward_momentum)
        self.meta_inactive = inactive_reason(c)
        self.xi = MetaState.initial(c, ctx.device)
        self.diag: dict[str, list] = defaultdict(list)
        self.seconds: dict[str, float] = defaultdict(float)
        self.gates: dict[str, int] = defaultdict(int)
        probe = torch.arange(min(256, len(data.train)), device=data.train.device)
        self.probe = data.train.index(probe)

    @contextlib.contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Adds the wall time of the block to ``seconds[key]``; blocks never nest, so the keys do not overlap."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - t0

    def step(self, loss: Tensor) -> None:
        if self.c.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.c.grad_clip)
        self.opt.step()
        self.sched.step()

    def rec_step(self, batch: Batch) -> Tensor:
        loss, _ = reconstruction_loss(self.model, batch, self.ctx.generator)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.step(loss)
        return loss.detach()

    def choose_arm(self) -> int:
        if self.c.bandit == "uniform":
            return int(self.rng.integers(len(self.model.spec.modalities)))
        return self.bandit.select(self.rng)

    def curvature_gate(self, batch: Batch, target: int) -> float:
        """ρ of Eq. (14) from the curvature of λ·L_coll w.r.t. the attacked encoder (the only part of L_SDL that
        depends on it), estimated on the first ``curvature_batch`` samples (§3.13 recommends sub-sampling)."""
        c, net = self.c, self.model.net
        m = self.model.spec.modalities[target]
        sub = batch.index(torch.arange(min(c.curvature_batch, len(batch)), device=batch.device))
        keep = sub.present[:, target].view(-1, 1, 1).to(sub.x[m].dtype)
        lam_min, _ = collapse_curvature(net.encoders[m], sub.x[m] * keep, sub.lengths[m], self.xi.lam, self.xi.eta,
                                        iters=c.curvature_iters, generator=self.ctx.generator,
                                        source=c.curvature_source, stable_rank_sign=c.stable_rank_sign)
        self.diag["lambda_min"].append(lam_min)
        return gate(lam_min, self.opt.param_groups[0]["lr"], float(self.xi.kappa))

    def sdl_step(self, batch: Batch) -> Tensor:
        c, ctx = self.c, self.ctx
        with self.timed("bandit"):
            target = self.choose_arm()
        gated = c.curvature_gate and c.use_collapse  # the gate reads λ·L_coll's curvature: none without it
        if gated:
            with self.timed("curvature_gate"):
                rho = self.curvature_gate(batch, target)
        with self.timed("sdl"):
            loss, z = sdl_task_loss(self.model, batch, target)
        if c.use_collapse:
            with self.timed("collapse"):
                loss = loss + collapse_term(self.model, z, target, self.xi.values(), ctx.generator)
        with self.timed("sdl"):
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        if gated:
            with self.timed("curvature_gate"):
                encoder = list(self.model.net.encoders[self.model.spec.modalities[target]].parameters())
                branch = apply_gate(encoder, rho, float(self.xi.kappa), mode=c.gate_mode,
                                    mask_prob=c.gate_mask_prob, generator=ctx.generator)
                self.gates[branch] += 1
        with self.timed("sdl"):
            self.step(loss)
        with self.timed("bandit"):
            reward = self.normalizer(float(observe_info_gain(self.model, batch, target)))
            if c.bandit == "exp3p":
                self.bandit.update(target, reward)
            self.diag["arms"].append(target)
        return loss.detach()

    @torch.no_grad()
    def record_epoch(self) -> None:
        was = self.model.training
        self.model.eval()
        z = self.model.net.encode(self.probe).z
        self.model.train(was)
        self.diag["stable_rank"].append([float(stable_rank(batch_covariance(z[:, j]))) for j in range(z.shape[1])])
        self.diag["xi"].append(self.xi.as_dict())

    def run(self) -> FitResult:
        c, data, ctx = self.c, self.data, self.ctx
        metric = resolve_select_metric(c, data.spec.task)
        sel, history, start = Selector(metric, c.patience), [], time.perf_counter()
        for epoch in range(c.epochs):
            self.model.train()
            total = torch.zeros((), device=ctx.device)
            for idx in minibatches(len(data.train), c.batch_size, ctx.generator, ctx.device):
                if self.rng.random() < c.p_sdl:
                    total += self.sdl_step(data.train.index(idx))  # times its own parts
                else:
                    with self.timed("rec"):
                        total += self.rec_step(data.train.index(idx))
            train_loss = check_finite(total, epoch) / self.steps_per_epoch
            if self.meta_inactive is None and (epoch + 1) % c.meta_every == 0:
                with self.timed("bhgd"):
                    self.diag["meta"].append(meta_step(self.model, data, self.xi, self.ctx, self.rng, self.bandit))
            with self.timed("eval"):
                self.record_epoch()
                value = validation_score(self.model, data.valid, metric)
            history.append({"epoch": epoch, "train_loss": train_loss, f"valid_{metric}": value})
            ctx.on_epoch(epoch + 1, c.epochs)
            if sel.update(self.model, epoch, value):
                break
        sel.restore(self.model)
        extra = self.summary()
        return FitResult(metric, sel.best_epoch, sel.best_value, len(history), history,
                         time.perf_counter() - start, extra)

    def summary(self) -> dict[str, Any]:
        arms = np.bincount(np.asarray(self.diag["arms"], dtype=int), minlength=len(self.model.spec.modalities))
        n_gates = sum(self.gates.values())
        return {
            "bandit_arm_counts": dict(zip(self.model.spec.modalities, arms.tolist(), strict=True)),
            "bandit_final_probabilities": self.bandit.probabilities().tolist(),
            "stable_rank_per_epoch": self.diag["stable_rank"],
            "xi_per_epoch": self.diag["xi"],
            "meta_updates": self.diag["meta"],
            "bhgd_inactive_reason": self.meta_inactive,
            "gate_fractions": {k: v / n_gates for k, v in self.gates.items()} if n_gates else {},
            "curvature_lambda_min": self.diag["lambda_min"],
            "seconds": dict(self.seconds),
        }


def fit_modal_immune(model: ModalImmune, data: Dataset, ctx: FitContext) -> FitResult:
    return Trainer(model, data, ctx).run()
