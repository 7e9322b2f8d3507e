"""Certified Neumann hyper-gradient (ModalImmune §3.9, Eq. 15, App. A.4, B, C).

Implicit-function hyper-gradient of L_val(θ*(ξ)) with the standard sign (gap #9):
    dL_val/dξ = ∂L_val/∂ξ − (∂²L_train/∂ξ∂θ) · H⁻¹ · ∂L_val/∂θ,     H = ∂²L_train/∂θ².
H⁻¹v is a truncated Neumann series, selectable by ``form``:

- ``"paper"`` (the default of ``ModalImmuneConfig.hypergrad_form`` and of :func:`hypergradient`): Eq. (15) as
  printed, (I − αH)⁻¹v = Σ_{k≥0} (αH)^k v, contraction q = αβ with β = ‖H‖₂. Its sum is not H⁻¹v (the review
  note's point 4); for the small α = 5e-3 it is a curvature-corrected one-step greedy hyper-gradient, and its
  certificate needs only αβ < 1, which an indefinite Hessian can meet.
- ``"ift"``: H⁻¹v = α Σ_{k≥0} (I − αH)^k v (Lorraine et al. 2020), contraction q = ‖I − αH‖₂ =
  max(|1 − αλ_min|, |1 − αλ_max|). This is the series whose sum *is* the implicit hyper-gradient, but with an
  indefinite H (λ_min < 0) q > 1: it never certifies and always runs K = k_max, so it is the option.

Certificate (App. A.4, Eq. 37): the tail after K terms is at most q^K / (1 − q) · ‖v‖ (times α for ``ift``).
K starts at 1 and doubles (1, 2, 4, 8), capped at ``k_max`` = 10, until q^K / (1 − q) <= ``tol_ratio`` (0.02);
when q >= 1 the series is not contracting, K = k_max and the result is marked uncertified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from baselines.modal_immune.curvature import Vec, extreme_eigenvalues, hvp_from_grads

# ξ ranges of Table 7: (low, high)
META_RANGES = {"lambda": (0.1, 1.0), "eta": (0.05, 0.2), "kappa": (0.1, 1.0)}


def neumann_depth(q: float, tol_ratio: float = 0.02, k_max: int = 10) -> tuple[int, bool]:
    """The doubling rule: smallest K in 1, 2, 4, ... (capped at ``k_max``) with q^K/(1−q) <= tol; (K, certified)."""
    if q < 0 or tol_ratio <= 0 or k_max < 1:
        raise ValueError(f"need q >= 0, tol_ratio > 0, k_max >= 1; got {q}, {tol_ratio}, {k_max}")
    if q >= 1:
        return k_max, False
    k = 1
    while q**k / (1 - q) > tol_ratio and k < k_max:
        k = min(2 * k, k_max)
    return k, q**k / (1 - q) <= tol_ratio


def neumann_apply(v: Vec, hvp: Callable[[Vec], Vec], alpha: float, k: int, form: str) -> Vec:
    """K-term truncation of the selected series applied to ``v``."""
    term, total = list(v), list(v)
    for _ in range(k - 1 if form == "paper" else k):
        hv = hvp(term)
        term = [alpha * h for h in hv] if form == "paper" else [t - alpha * h for t, h in zip(term, hv, strict=True)]
        total = [a + b for a, b in zip(total, term, strict=True)]
    return total if form == "paper" else [alpha * t for t in total]


@dataclass(frozen=True)
class HyperGradient:
    grads: list[Tensor]
    K: int
    q: float
    certified: bool
    tail_bound_ratio: float
    alpha_beta: float


def hypergradient(train_loss: Callable[[], Tensor], val_loss: Callable[[], Tensor], params: Sequence[Tensor],
                  hparams: Sequence[Tensor], *, alpha: float, tol_ratio: float = 0.02, k_max: int = 10,
                  form: str = "paper", iters: int = 10, generator: torch.Generator | None = None) -> HyperGradient:
    """dL_val/dξ for each tensor in ``hparams`` (0-d, requires_grad); ``train_loss`` must depend on them."""
    if form not in ("ift", "paper"):
        raise ValueError(f"form must be 'ift' or 'paper', got {form!r}")
    lv = val_loss()
    v = [g if g is not None else torch.zeros_like(p) for g, p in
         zip(torch.autograd.grad(lv, params, retain_graph=True, allow_unused=True), params, strict=True)]
    direct = torch.autograd.grad(lv, hparams, allow_unused=True)
    lt = train_loss()
    g_train = torch.autograd.grad(lt, params, create_graph=True, allow_unused=True)
    hvp = hvp_from_grads(g_train, params)
    lam_min, lam_max = extreme_eigenvalues(hvp, params, iters, generator)
    beta = max(abs(lam_min), abs(lam_max))
    q = alpha * beta if form == "paper" else max(abs(1 - alpha * lam_min), abs(1 - alpha * lam_max))
    k, certified = neumann_depth(q, tol_ratio, k_max)
    w = neumann_apply(v, hvp, alpha, k, form)
    live = [(g, x) for g, x in zip(g_train, w, strict=True) if g is not None]
    mixed = torch.autograd.grad([g for g, _ in live], hparams, grad_outputs=[x for _, x in live], allow_unused=True)
    grads = [(d if d is not None else torch.zeros_like(h)) - (m if m is not None else torch.zeros_like(h))
             for d, m, h in zip(direct, mixed, hparams, strict=True)]
    tail = q**k / (1 - q) if q < 1 else float("inf")
    return HyperGradient([g.detach() for g in grads], k, q, certified, tail, alpha * beta)


def project_meta(xi: dict[str, float]) -> dict[str, float]:
    """Clamp ξ to the paper's ranges (Table 7)."""
    return {k: min(max(v, META_RANGES[k][0]), META_RANGES[k][1]) for k, v in xi.items()}
