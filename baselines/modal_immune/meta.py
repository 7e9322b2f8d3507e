"""BHGD: the periodic update of ξ = {λ, η, κ} by a certified Neumann hyper-gradient (§3.9, Eq. 15, App. A.4).

The training objective seen by ξ is the expected per-batch loss of Eq. (3)/(8):
``L_train(θ, ξ) = L_rec + p_sdl · λ · L_coll(m*; η)`` on a training batch, with m* the bandit's most likely arm;
``L_val(θ)`` is the task loss on a validation batch under the same random modality masking (validation data
only: tuning never sees the test split). λ and η get the implicit-function hyper-gradient. κ has no path
through any loss (it only scales a gradient), so its hyper-gradient is the one-step unrolled one (gap #9)
through the step κ actually scales (:class:`GatedStep`): in an SDL batch m* is omitted from fusion, so the
attacked encoder's gradient is g = ∇θ λ·L_coll(m*) alone, and the gate's negative-feedback branch applies
θ'(κ) = θ − lr·(I − κM) g. Then dL_val(θ')/dκ = lr · ⟨∇L_val(θ'), M g⟩ exactly (chain rule), with M drawn once
and ∇L_val taken *after* the step. (An earlier version differentiated L_rec + p·λ·L_coll, whose L_rec part
the gate never scales, and took ∇L_val before the step; its sign disagreed with this one in 7 of 9 probes.)
The step is its SGD form at the current learning rate; the Adam step the optimizer actually takes rescales
each coordinate, which this first-order hyper-gradient does not model.
ξ takes a sign-gradient step of ``meta_lr`` and is projected onto the paper's ranges (Table 7).

θ is restricted to the attacked encoder and the prediction path (fusion hub, modality positions, head): λ and
η reach L_train only through L_coll of the attacked encoder, so the mixed derivative ∂²L_train/∂ξ∂θ vanishes
elsewhere, and dropping the other blocks of H (a block-diagonal approximation) keeps the Neumann products
affordable on a CPU. β (for the certificate) is estimated by Lanczos (power iteration's Krylov form) within the
same HVP budget as the curvature gate (``curvature_iters``). BHGD runs only when ξ weights a trained loss
(:func:`inactive_reason`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call

from baselines.modal_immune.collapse import collapse_loss
from baselines.modal_immune.curvature import double_backward_safe
from baselines.modal_immune.hypergrad import hypergradient, project_meta
from baselines.modal_immune.losses import collapse_term, per_sample_task_loss, random_keep, reconstruction_loss
from harness.data import Batch, Dataset
from harness.seeding import torch_generator
from harness.training import FitContext

if TYPE_CHECKING:
    from baselines.modal_immune import ModalImmune, ModalImmuneConfig
    from baselines.modal_immune.bandit import Exp3P


@dataclass
class MetaState:
    """ξ as 0-d tensors on the training device."""

    lam: Tensor
    eta: Tensor
    kappa: Tensor

    @classmethod
    def initial(cls, c: ModalImmuneConfig, device: torch.device) -> MetaState:
        def t(v: float) -> Tensor:
            return torch.tensor(float(v), device=device)

        return cls(t(c.lambda_coll), t(c.eta_rank), t(c.kappa))

    def values(self) -> dict[str, Tensor]:
        return {"lambda": self.lam, "eta": self.eta, "kappa": self.kappa}

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.values().items()}


def inactive_reason(c: ModalImmuneConfig) -> str | None:
    """Why BHGD does not run under ``c``, or None when it does. A hyper-gradient of ξ only means something when ξ
    weights a loss that training actually minimises."""
    if not c.meta_learning:
        return "meta_learning is false: ξ stays at its initial values"
    if c.p_sdl == 0:
        return "p_sdl = 0: there are no SDL batches, so ξ weights no trained loss"
    if not c.use_collapse:
        return ("use_collapse is false: λ and η weight a collapse term that is never trained, and κ scales the "
                "curvature gate, which is off without it")
    return None


def meta_step(model: ModalImmune, data: Dataset, xi: MetaState, ctx: FitContext, rng: np.random.Generator,
              bandit: Exp3P, lr_of: Callable[[ModalImmune], float] | None = None) -> dict[str, Any]:
    """One BHGD update of ``xi`` in place; returns what happened (for the diagnostics). ``lr_of`` gives the
    encoders' current learning rate (the gated step's; default the config's ``lr``)."""
    c = model.config
    reason = inactive_reason(c)
    if reason is not None:  # the training loss below would contain a term that training never sees
        raise ValueError(f"BHGD cannot run with this configuration: {reason}")
    n = c.meta_batch
    seed = int(rng.integers(2**62))
    train = data.train.index(torch.randperm(len(data.train), generator=torch_generator(seed))[:n].to(ctx.device))
    val = data.valid.index(torch.randperm(len(data.valid), generator=torch_generator(seed + 1))[:n].to(ctx.device))
    target = int(np.argmax(bandit.probabilities())) if c.bandit == "exp3p" else int(rng.integers(val.present.shape[1]))
    net = model.net
    path = [net.encoders[model.spec.modalities[target]], net.fusion, net.head]
    params = [p for mod in path for p in mod.parameters() if p.requires_grad] + [net.modality_pos]
    lam = xi.lam.detach().clone().requires_grad_(True)
    eta = xi.eta.detach().clone().requires_grad_(True)

    normalize = c.collapse_scale == "normalized"

    def train_loss() -> Tensor:  # deterministic: fixed generators, dropout off
        rec, z = reconstruction_loss(model, train, torch_generator(seed + 2, ctx.device))
        coll, _ = collapse_loss(z[:, target], eta, generator=torch_generator(seed + 3, ctx.device),
                                stable_rank_sign=c.stable_rank_sign, normalize=normalize)
        return rec + c.p_sdl * lam * coll

    keep = random_keep(val.present, c.rec_mask_p, torch_generator(seed + 4, ctx.device))

    def val_loss(params: dict[str, Tensor] | None = None) -> Tensor:
        out = model(val.drop(keep)) if params is None else functional_call(model, params, (val.drop(keep),),
                                                                           strict=False)
        return per_sample_task_loss(model, out, val.y).mean()

    was = model.training
    model.eval()
    try:
        with double_backward_safe():
            res = hypergradient(train_loss, val_loss, params, [lam, eta], alpha=c.inner_lr,
                                tol_ratio=c.neumann_tol, k_max=c.neumann_kmax, iters=c.curvature_iters,
                                form=c.hypergrad_form, generator=torch_generator(seed + 5))
        g_kappa = 0.0
        if c.curvature_gate:  # κ scales the gate's negative feedback; without the gate it scales nothing
            lr = float(lr_of(model)) if lr_of is not None else c.lr
            step = GatedStep.build(model, train, target, xi, val_loss, lr=lr,
                                   generator=torch_generator(seed + 6, ctx.device))
            g_kappa = step.hypergradient(float(xi.kappa))
    finally:
        model.train(was)
    g_lam, g_eta = (float(g) for g in res.grads)
    new = project_meta({
        "lambda": float(xi.lam) - c.meta_lr * np.sign(g_lam),
        "eta": float(xi.eta) - c.meta_lr * np.sign(g_eta),
        "kappa": float(xi.kappa) - c.meta_lr * np.sign(g_kappa),
    })
    xi.lam.fill_(new["lambda"])
    xi.eta.fill_(new["eta"])
    xi.kappa.fill_(new["kappa"])
    return {"K": res.K, "alpha_beta": res.alpha_beta, "certified": res.certified, "target": target,
            "grad": {"lambda": g_lam, "eta": g_eta, "kappa": g_kappa}, "xi": xi.as_dict()}


@dataclass
class GatedStep:
    """One gated SDL step of the attacked encoder in its SGD form, as a function of κ (module docstring):
    θ'(κ) = θ − lr·(g − κ·M·g), with g = ∇θ λ·L_coll(m*) on an SDL batch and M = diag(Bernoulli(q)).

    ``names`` are the encoder's parameter names in the model; ``val_loss(params)`` evaluates L_val with those
    parameters replaced (``torch.func.functional_call``).
    """

    names: list[str]
    theta: list[Tensor]
    g: list[Tensor]
    mask: list[Tensor]
    lr: float
    val_loss: Callable[[dict[str, Tensor]], Tensor]

    @classmethod
    def build(cls, model: ModalImmune, batch: Batch, target: int, xi: MetaState,
              val_loss: Callable[[dict[str, Tensor]], Tensor], *, lr: float,
              generator: torch.Generator) -> GatedStep:
        c, m = model.config, model.spec.modalities[target]
        named = [(n, p) for n, p in model.net.encoders[m].named_parameters() if p.requires_grad]
        z = model.net.encode(batch).z
        coll = collapse_term(model, z, target, xi.values(), generator)  # λ·L_coll(m*): what the gate scales
        grads = torch.autograd.grad(coll, [p for _, p in named], allow_unused=True)
        g = [gr.detach() if gr is not None else torch.zeros_like(p) for gr, (_, p) in zip(grads, named, strict=True)]
        mask = [(torch.rand(p.shape, generator=generator, device=generator.device) < c.gate_mask_prob)
                .to(p.device, p.dtype) for _, p in named]
        return cls([f"net.encoders.{m}.{n}" for n, _ in named], [p.detach() for _, p in named], g, mask, lr,
                   val_loss)

    def params(self, kappa: float) -> dict[str, Tensor]:
        return {n: t - self.lr * (g - kappa * mk * g)
                for n, t, g, mk in zip(self.names, self.theta, self.g, self.mask, strict=True)}

    def loss_after(self, kappa: float) -> float:
        """L_val(θ'(κ)) (for finite differences)."""
        with torch.no_grad():
            return float(self.val_loss(self.params(kappa)))

    def hypergradient(self, kappa: float) -> float:
        """dL_val(θ'(κ))/dκ = lr · ⟨∇L_val(θ'), M g⟩."""
        params = {n: t.detach().requires_grad_(True) for n, t in self.params(kappa).items()}
        v = torch.autograd.grad(self.val_loss(params), list(params.values()), allow_unused=True)
        return self.lr * sum(float((a * mk * g).sum()) for a, mk, g in zip(v, self.mask, self.g, strict=True)
                             if a is not None)
