"""ModalImmune's training loop, Algorithm 1 of the paper, under mibench's rules (select on validation only).

Per mini-batch, with probability ``p_sdl`` an SDL step (§3.6 Eq. 6–8, §3.7–3.8, §3.10), otherwise a
reconstruction-driven step (Eq. 4–5); after every ``meta_every`` epochs a BHGD update of ξ = {λ, η, κ}
(§3.9). Host-side decisions (SDL or not, the bandit's arm) come from a numpy generator seeded from the cell;
device randomness from the cell's torch generator. The bandit's reward is the one host sync per SDL step.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.modal_immune.bandit import Exp3P, InfoGainNormalizer, info_gain
from baselines.modal_immune.collapse import batch_covariance, collapse_loss, stable_rank
from baselines.modal_immune.curvature import apply_gate, double_backward_safe, gate, min_eigenvalue
from baselines.modal_immune.meta import MetaState, meta_step
from harness.data import Batch, Dataset
from harness.training import (
    FitContext,
    FitResult,
    Selector,
    check_finite,
    minibatches,
    resolve_select_metric,
    validation_score,
)

if TYPE_CHECKING:
    from baselines.modal_immune import ModalImmune


def random_keep(present: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Mask each available modality with probability ``p``, keeping at least one per row: bool ``[N, M]``.

    A row that lost every modality keeps the one with the highest uniform draw among its available ones.
    """
    u = torch.rand(present.shape, generator=generator, device=generator.device).to(present.device)
    keep = present & (u >= p)
    rescue = torch.where(present, u, torch.full_like(u, -1.0)).argmax(1)
    empty = ~keep.any(1, keepdim=True)
    return keep | (empty & F.one_hot(rescue, present.shape[1]).bool())


def per_sample_task_loss(model: ModalImmune, out: Tensor, y: Tensor) -> Tensor:
    if model.spec.task == "classification":
        return F.cross_entropy(out, y, reduction="none")
    return F.l1_loss(out, y, reduction="none") if model.config.regression_loss == "l1" else (out - y) ** 2


def reconstruction_loss(model: ModalImmune, batch: Batch, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """L_rec (Eq. 4–5) under random modality masking; returns (loss, embeddings z [N, M, d])."""
    c, net = model.config, model.net
    enc = net.encode(batch)
    available = random_keep(enc.present, c.rec_mask_p, generator)
    tokens, surrogate = net.fill(enc.z, available)
    loss = model.task_loss(net.predict_from(tokens), batch.y)
    if surrogate is not None and c.alpha_re > 0:
        loss = loss + c.alpha_re * net.reconstruction_loss(enc.z, surrogate, available, enc.present)
    if hasattr(net, "property_proj"):
        loss = loss + c.beta_pe * net.property_loss(enc.z, enc.present)
    if c.gamma_con > 0:
        loss = loss + c.gamma_con * net.contrastive_loss(enc.z, available, c.con_temperature)
    return loss, enc.z


def sdl_loss(model: ModalImmune, batch: Batch, target: int, xi: dict[str, Tensor],
             generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """L_SDL (Eq. 6–7): m* omitted from fusion (its slot gets the mask token, the literal reading), plus
    λ·L_coll(m*). Returns (total loss, the collapse term λ·L_coll, z [N, M, d])."""
    c, net = model.config, model.net
    enc = net.encode(batch)
    available = enc.present.clone()
    available[:, target] = False
    tokens, _ = net.fill(enc.z, available, use_generator=False)
    loss = model.task_loss(net.predict_from(tokens), batch.y)
    if c.gamma_con > 0:
        loss = loss + c.gamma_con * net.contrastive_loss(enc.z, available, c.con_temperature)
    coll = enc.z.sum() * 0.0
    if c.use_collapse:
        coll_raw, _ = collapse_loss(enc.z[:, target], xi["eta"], generator=generator,
                                    stable_rank_sign=c.stable_rank_sign)
        coll = xi["lambda"] * coll_raw
    return loss + coll, coll, enc.z


@torch.no_grad()
def observe_info_gain(model: ModalImmune, batch: Batch, target: int) -> Tensor:
    """ℓ_m* (Eq. 16): mean squared per-sample task-loss change when m* is removed, with the current model."""
    was = model.training
    model.eval()
    full = per_sample_task_loss(model, model(batch), batch.y)
    keep = torch.ones(len(model.spec.modalities), dtype=torch.bool)
    keep[target] = False
    without = per_sample_task_loss(model, model(batch.drop(keep)), batch.y)
    model.train(was)
    return info_gain(full, without)


class Trainer:
    """State of one ModalImmune training run; :meth:`run` is Algorithm 1."""

    def __init__(self, model: ModalImmune, data: Dataset, ctx: FitContext) -> None:
        c = self.c = model.config
        self.model, self.data, self.ctx = model, data, ctx
        self.rng = np.random.default_rng(ctx.seed)
        prop = [p for n, p in model.named_parameters() if n.startswith("net.property")]
        rest = [p for n, p in model.named_parameters() if not n.startswith("net.property")]
        self.opt = torch.optim.AdamW([{"params": rest, "lr": c.lr}, {"params": prop, "lr": c.property_lr}],
                                     weight_decay=c.weight_decay)
        self.steps_per_epoch = math.ceil(len(data.train) / c.batch_size)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, c.epochs * self.steps_per_epoch)
        horizon = max(1, round(c.p_sdl * c.epochs * self.steps_per_epoch))
        self.bandit = Exp3P(len(model.spec.modalities), horizon=horizon, gamma=c.bandit_gamma,
                            eta_mode=c.bandit_eta_mode)
        self.normalizer = InfoGainNormalizer()
        self.xi = MetaState.initial(c, ctx.device)
        self.diag: dict[str, list] = defaultdict(list)
        self.seconds: dict[str, float] = defaultdict(float)
        self.gates: dict[str, int] = defaultdict(int)
        probe = torch.arange(min(256, len(data.train)), device=data.train.device)
        self.probe = data.train.index(probe)

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
        params = [p for p in net.encoders[m].parameters() if p.requires_grad]
        with double_backward_safe():
            keep = sub.present[:, target].view(-1, 1, 1).to(sub.x[m].dtype)
            z = net.encoders[m](sub.x[m] * keep, sub.lengths[m])
            coll, _ = collapse_loss(z, self.xi.eta, generator=self.ctx.generator, stable_rank_sign=c.stable_rank_sign)
            lam_min, _ = min_eigenvalue(self.xi.lam * coll, params, iters=c.curvature_iters,
                                        generator=self.ctx.generator, source=c.curvature_source)
        self.diag["lambda_min"].append(lam_min)
        return gate(lam_min, self.opt.param_groups[0]["lr"], float(self.xi.kappa))

    def sdl_step(self, batch: Batch) -> Tensor:
        target = self.choose_arm()
        gated = self.c.curvature_gate and self.c.use_collapse
        if gated:
            t0 = time.perf_counter()
            rho = self.curvature_gate(batch, target)
            self.seconds["curvature"] += time.perf_counter() - t0
        loss, _, _ = sdl_loss(self.model, batch, target, self.xi.values(), self.ctx.generator)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if gated:
            encoder = list(self.model.net.encoders[self.model.spec.modalities[target]].parameters())
            branch = apply_gate(encoder, rho, float(self.xi.kappa), mode=self.c.gate_mode,
                                mask_prob=self.c.gate_mask_prob, generator=self.ctx.generator)
            self.gates[branch] += 1
        self.step(loss)
        t0 = time.perf_counter()
        reward = self.normalizer(float(observe_info_gain(self.model, batch, target)))
        if self.c.bandit == "exp3p":
            self.bandit.update(target, reward)
        self.diag["arms"].append(target)
        self.seconds["bandit"] += time.perf_counter() - t0
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
                kind = "sdl" if self.rng.random() < c.p_sdl else "rec"
                t0 = time.perf_counter()
                total += self.sdl_step(data.train.index(idx)) if kind == "sdl" else self.rec_step(
                    data.train.index(idx))
                self.seconds[kind] += time.perf_counter() - t0
            train_loss = check_finite(total, epoch) / self.steps_per_epoch
            if c.meta_learning and c.p_sdl > 0 and (epoch + 1) % c.meta_every == 0:
                t0 = time.perf_counter()
                self.diag["meta"].append(meta_step(self.model, data, self.xi, self.ctx, self.rng, self.bandit))
                self.seconds["meta"] += time.perf_counter() - t0
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

    def summary(self) -> dict:
        arms = np.bincount(np.asarray(self.diag["arms"], dtype=int), minlength=len(self.model.spec.modalities))
        n_gates = sum(self.gates.values())
        return {
            "bandit_arm_counts": dict(zip(self.model.spec.modalities, arms.tolist(), strict=True)),
            "bandit_final_probabilities": self.bandit.probabilities().tolist(),
            "stable_rank_per_epoch": self.diag["stable_rank"],
            "xi_per_epoch": self.diag["xi"],
            "meta_updates": self.diag["meta"],
            "gate_fractions": {k: v / n_gates for k, v in self.gates.items()} if n_gates else {},
            "curvature_lambda_min": self.diag["lambda_min"],
            "seconds": dict(self.seconds),
        }


def fit_modal_immune(model: ModalImmune, data: Dataset, ctx: FitContext) -> FitResult:
    return Trainer(model, data, ctx).run()
