"""ModalImmune's training steps, Algorithm 1 of the paper, as hooks of mibench's one training loop.

The loop (``harness.training``) owns epochs, the learning-rate schedule, the optimizer step, clipping, the finite
check and selection on validation only. :class:`Trainer` holds ModalImmune's own state (EXP3.P, ξ, diagnostics)
and supplies, per mini-batch, with probability ``p_sdl`` an SDL step (§3.6 Eq. 6–8, §3.7–3.8, §3.10: the curvature
gate rewrites the attacked encoder's gradient right after the backward pass, the bandit observes ℓ_m* right
after the optimizer step), otherwise a reconstruction-driven step (Eq. 4–5); and after every ``meta_every``
epochs a BHGD update of ξ = {λ, η, κ} (§3.9). Host-side decisions (SDL or not, the bandit's arm) come from a
numpy generator seeded from the cell; device randomness from the cell's torch generator. The bandit's reward is
the one host sync per SDL step.

Wall time per component (``diagnostics.seconds``), non-overlapping: ``rec`` reconstruction forward passes;
``sdl`` the SDL task forward; ``collapse`` the forward of λ·L_coll; ``curvature_gate`` the λ_min estimate and
rewriting the encoder's gradient; ``bandit`` the arm choice, the two no-grad passes of ℓ_m* and the EXP3.P
update; ``bhgd`` the ξ updates; ``probe`` the per-epoch stable-rank probe. Backward passes, optimizer steps and
validation are the loop's and are not in these keys. Times are host clocks without device synchronisation (which
would stall the GPU), so on a GPU a component's queued kernels may be charged to the next host sync.
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

from baselines.modal_immune.bandit import Exp3P, InfoGainNormalizer
from baselines.modal_immune.collapse import batch_covariance, stable_rank
from baselines.modal_immune.curvature import apply_gate, collapse_curvature, gate
from baselines.modal_immune.losses import collapse_term, observe_info_gain, reconstruction_loss, sdl_task_loss
from baselines.modal_immune.meta import MetaState, inactive_reason, meta_step
from harness.data import Batch, Dataset
from harness.training import FitContext, Stage, StepOut

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
    """ModalImmune's state during one training run and its hooks for the loop (:meth:`stage`)."""

    def __init__(self, model: ModalImmune, data: Dataset, ctx: FitContext) -> None:
        c = self.c = model.config
        self.model, self.data, self.ctx = model, data, ctx
        self.rng = np.random.default_rng(ctx.seed)
        self.groups = param_groups(model)
        steps_per_epoch = math.ceil(len(data.train) / c.batch_size)
        horizon = max(1, round(c.p_sdl * c.epochs * steps_per_epoch))
        self.bandit = Exp3P(len(model.spec.modalities), horizon=horizon, gamma=c.bandit_gamma,
                            eta_mode=c.bandit_eta_mode, delta=c.bandit_delta)
        self.normalizer = InfoGainNormalizer(c.bandit_reward_momentum)
        self.meta_inactive = inactive_reason(c)
        self.xi = MetaState.initial(c, ctx.device)
        self.diag: dict[str, list] = defaultdict(list)
        self.seconds: dict[str, float] = defaultdict(float)
        self.gates: dict[str, int] = defaultdict(int)
        self.ritz: dict[int, list] = {}  # arm -> warm start of its next Lanczos run
        probe = torch.arange(min(256, len(data.train)), device=data.train.device)
        self.probe = data.train.index(probe)

    def stage(self) -> Stage:
        """The one stage of Algorithm 1, selected by the run's policy (``ctx.scorer``)."""
        return Stage("train", self.model, self.step, self.c.budget(), self.ctx.scorer(self.data),
                     param_groups=self.groups, end_epoch=self.end_epoch, on_optimizer=self.watch_lr)

    def watch_lr(self, opt: torch.optim.Optimizer) -> None:
        self.opt = opt

    @contextlib.contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Adds the wall time of the block to ``seconds[key]``; blocks never nest, so the keys do not overlap."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - t0

    def step(self, batch: Batch, generator: torch.Generator) -> StepOut:
        """Algorithm 1 lines 4–15 for one mini-batch: an SDL step with probability ``p_sdl``, else a
        reconstruction-driven one."""
        if self.rng.random() < self.c.p_sdl:
            return self.sdl_step(batch, generator)
        with self.timed("rec"):
            return StepOut(reconstruction_loss(self.model, batch, generator)[0])

    def choose_arm(self) -> int:
        if self.c.bandit == "uniform":
            return int(self.rng.integers(len(self.model.spec.modalities)))
        return self.bandit.select(self.rng)

    def curvature_gate(self, batch: Batch, target: int) -> float:
        """ρ of Eq. (14) from the curvature of λ·L_coll w.r.t. the attacked encoder (the only part of L_SDL that
        depends on it), estimated on the first ``curvature_batch`` samples (§3.13 recommends sub-sampling)."""
        c = self.c
        lam_min, lam_max = self.estimate_curvature(batch, target)
        lr = self.opt.param_groups[0]["lr"] if hasattr(self, "opt") else c.lr
        return gate(lam_min, lam_max, float(self.xi.kappa), threshold=c.gate_threshold, lr=lr,
                    tau_rel=c.gate_tau_rel)

    def estimate_curvature(self, batch: Batch, target: int) -> tuple[float, float]:
        """(λ_min, λ_max) by Lanczos: ``curvature_iters`` products from a random start, or, with
        ``curvature_warm_iters = w > 0`` and an earlier estimate for this arm, ``w`` products started from the
        sum of that estimate's two Ritz vectors (the extreme eigenvectors move little between SDL steps)."""
        c, net = self.c, self.model.net
        m = self.model.spec.modalities[target]
        sub = batch.index(torch.arange(min(c.curvature_batch, len(batch)), device=batch.device))
        keep = sub.present[:, target].view(-1, 1, 1).to(sub.x[m].dtype)
        start = self.ritz.get(target) if c.curvature_warm_iters else None
        ritz: list = []
        lam_min, lam_max = collapse_curvature(net.encoders[m], sub.x[m] * keep, sub.lengths[m], self.xi.lam,
                                              self.xi.eta, generator=self.ctx.generator,
                                              iters=c.curvature_warm_iters if start is not None else c.curvature_iters,
                                              source=c.curvature_source, stable_rank_sign=c.stable_rank_sign,
                                              normalize=c.collapse_scale == "normalized", start=start,
                                              ritz=ritz if c.curvature_warm_iters else None)
        if ritz:
            self.ritz[target] = [a + b for a, b in zip(*ritz, strict=True)]
        self.diag["lambda_min"].append(lam_min)
        self.diag["lambda_max"].append(lam_max)
        self.diag["gate_arms"].append(target)
        return lam_min, lam_max

    def sdl_step(self, batch: Batch, generator: torch.Generator) -> StepOut:
        c = self.c
        with self.timed("bandit"):
            target = self.choose_arm()
        gated = c.curvature_gate and c.use_collapse  # the gate reads λ·L_coll's curvature: none without it
        rho = 0.0
        if gated:
            with self.timed("curvature_gate"):
                rho = self.curvature_gate(batch, target)
        with self.timed("sdl"):
            loss, z = sdl_task_loss(self.model, batch, target)
        if c.use_collapse:
            with self.timed("collapse"):
                loss = loss + collapse_term(self.model, z, target, self.xi.values(), generator)

        def gate_gradient() -> None:  # Alg. 1 line 10: the gate acts on the attacked encoder's gradient
            with self.timed("curvature_gate"):
                encoder = list(self.model.net.encoders[self.model.spec.modalities[target]].parameters())
                branch = apply_gate(encoder, rho, float(self.xi.kappa), mode=c.gate_mode,
                                    mask_prob=c.gate_mask_prob, generator=generator)
                self.gates[branch] += 1

        def observe() -> None:  # Alg. 1 line 11: ℓ_m* with the updated model, then the EXP3.P update
            with self.timed("bandit"):
                reward = self.normalizer(float(observe_info_gain(self.model, batch, target)))
                if c.bandit == "exp3p":
                    self.bandit.update(target, reward)
                self.diag["arms"].append(target)

        return StepOut(loss, after_backward=gate_gradient if gated else None, after_step=observe)

    def end_epoch(self, epoch: int) -> None:
        """Alg. 1 line 16 (BHGD every ``meta_every`` epochs), then the stable-rank probe of the diagnostics."""
        if self.meta_inactive is None and (epoch + 1) % self.c.meta_every == 0:
            with self.timed("bhgd"):
                self.diag["meta"].append(meta_step(self.model, self.data, self.xi, self.ctx, self.rng, self.bandit,
                                                    lr_of=lambda _: self.opt.param_groups[0]["lr"]))
        with self.timed("probe"):
            self.record_epoch()

    @torch.no_grad()
    def record_epoch(self) -> None:
        was = self.model.training
        self.model.eval()
        z = self.model.net.encode(self.probe).z
        self.model.train(was)
        self.diag["stable_rank"].append([float(stable_rank(batch_covariance(z[:, j]))) for j in range(z.shape[1])])
        self.diag["xi"].append(self.xi.as_dict())

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
            "gate_counts": dict(self.gates),
            "gate_fractions": {k: v / n_gates for k, v in self.gates.items()} if n_gates else {},
            "curvature_lambda_min": self.diag["lambda_min"],
            "curvature_lambda_max": self.diag["lambda_max"],
            "curvature_arms": self.diag["gate_arms"],
            "curvature_estimates": len(self.diag["lambda_min"]),
            "seconds": dict(self.seconds),
        }
