"""BHGD: the periodic update of ξ = {λ, η, κ} by a certified Neumann hyper-gradient (§3.9, Eq. 15, App. A.4).

The training objective seen by ξ is the expected per-batch loss of Eq. (3)/(8):
``L_train(θ, ξ) = L_rec + p_sdl · λ · L_coll(m*; η)`` on a training batch, with m* the bandit's most likely arm;
``L_val(θ)`` is the task loss on a validation batch under the same random modality masking (validation data
only: tuning never sees the test split). λ and η get the implicit-function hyper-gradient. κ has no path
through any loss (it only scales a gradient), so its hyper-gradient is the one-step unrolled one
(gap #9): θ' = θ − lr·(g − κ M g) gives dL_val/dκ = lr · vᵀ E[M] g = lr · q · vᵀg over the attacked encoder.
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

from baselines.modal_immune.collapse import collapse_loss
from baselines.modal_immune.curvature import double_backward_safe
from baselines.modal_immune.hypergrad import hypergradient, project_meta
from baselines.modal_immune.losses import per_sample_task_loss, random_keep, reconstruction_loss
from harness.data import Dataset
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
              bandit: Exp3P) -> dict[str, Any]:
    """One BHGD update of ``xi`` in place; returns what happened (for the diagnostics)."""
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

    def train_loss() -> Tensor:  # deterministic: fixed generators, dropout off
        rec, z = reconstruction_loss(model, train, torch_generator(seed + 2, ctx.device))
        coll, _ = collapse_loss(z[:, target], eta, generator=torch_generator(seed + 3, ctx.device),
                                stable_rank_sign=c.stable_rank_sign)
        return rec + c.p_sdl * lam * coll

    def val_loss() -> Tensor:
        keep = random_keep(val.present, c.rec_mask_p, torch_generator(seed + 4, ctx.device))
        return per_sample_task_loss(model, model(val.drop(keep)), val.y).mean()

    was = model.training
    model.eval()
    try:
        with double_backward_safe():
            res = hypergradient(train_loss, val_loss, params, [lam, eta], alpha=c.inner_lr,
                                tol_ratio=c.neumann_tol, k_max=c.neumann_kmax, iters=c.curvature_iters,
                                form=c.hypergrad_form, generator=torch_generator(seed + 5))
        g_kappa = kappa_hypergradient(model, train_loss, val_loss, target)
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


def kappa_hypergradient(model: ModalImmune, train_loss: Callable[[], Tensor], val_loss: Callable[[], Tensor],
                        target: int) -> float:
    """dL_val/dκ of one gated step on the attacked encoder: lr · q · ⟨∂L_val/∂θ_m*, ∂L_train/∂θ_m*⟩."""
    c = model.config
    enc = [p for p in model.net.encoders[model.spec.modalities[target]].parameters() if p.requires_grad]
    v = torch.autograd.grad(val_loss(), enc, allow_unused=True)
    g = torch.autograd.grad(train_loss(), enc, allow_unused=True)
    dot = sum(float((a * b).sum()) for a, b in zip(v, g, strict=True) if a is not None and b is not None)
    return c.lr * c.gate_mask_prob * dot
