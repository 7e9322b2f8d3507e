"""Spectrum-adaptive collapse regularizer (ModalImmune §3.7, Eq. 9–12).

For the attacked modality's batch embedding matrix Z_B (``[n, d]``):

- ρ_B = largest singular value of Z_B (Eq. 9); σ_B = ρ_B / √d (Eq. 10), **detached** (a noise scale, gap #8);
- stable_rank(Cov_B) = ‖Cov_B‖_* / ‖Cov_B‖_2 (Eq. 11) = tr / λ_max for the PSD covariance (an effective rank);
- L_coll = (1/n) Σ_i ‖z_i − ε_i‖² + s · η · stable_rank(Cov_B) with fresh ε_i ~ N(0, σ_B² I) (Eq. 12).

``s`` is +1 as Eq. (12) prints. The text describes the collapse as *flattening* the spectrum (§3.2, Fig. 6),
which raises this ratio, so minimising +η·stable_rank pushes the other way (gap #17); ``stable_rank_sign = -1``
follows the text, and is ModalImmune's default here because only it reproduces the described effect (see
``ModalImmuneConfig``). Note that the Gaussian-target term alone already drives Z_B towards noise: with a fresh
zero-mean target each step its expected gradient shrinks Z_B while the noise randomises the encoder's directions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

JITTER = 1e-6  # keeps eigvalsh's gradient finite when the covariance is (near) singular


def batch_covariance(z: Tensor) -> Tensor:
    """Centered sample covariance of ``z [n, d]`` with ddof = 1: ``[d, d]``, computed in float32 or wider."""
    z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    zc = z - z.mean(0, keepdim=True)
    return zc.T @ zc / max(z.shape[0] - 1, 1)


def stable_rank(cov: Tensor) -> Tensor:
    """‖cov‖_* / ‖cov‖_2 of a symmetric PSD matrix (= tr / λ_max), differentiable; always >= 1.

    λ_max is evaluated as vᵀ cov v with v the top eigenvector found without gradient. By the envelope theorem
    the first derivative is exact (for a simple top eigenvalue); second derivatives leave out v's rotation.
    That keeps Hessian-vector products finite when cov is rank-deficient (batch n < d), where the second
    derivative of ``eigvalsh`` is 0/0 over the repeated zero eigenvalues.

    What the curvature gate loses by this: the exact d²λ_max adds 2 Σ_i (v_iᵀ dC v)² / (λ_max − λ_i) >= 0, which
    enters L_coll with the factor −s·η·tr/λ_max². With s = −1 (the default) the omitted part is PSD, so the gate's
    Hessian is the exact one minus a PSD matrix and its λ_min is never above the exact λ_min (the gate errs towards
    freezing). Measured against the exact Hessian (tests/test_modal_immune_components.py: a tiny Bi-LSTM encoder,
    16 samples, λ = 0.5, η = 0.1): with d = 4 (132 parameters, 20 seeds) λ_min was too negative by a median 2.3 %,
    at most 37 %, and λ_max too small by up to 8× when the top two covariance eigenvalues were close; with d = 24 > n
    (232 parameters, 10 seeds) by a median 2.9 %, at most 20 %.
    """
    eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    with torch.no_grad(), torch.autocast(device_type=cov.device.type, enabled=False):
        top = torch.linalg.eigh(cov.detach() + JITTER * eye)[1][:, -1]
    lam_max = top @ cov @ top
    return torch.trace(cov).clamp_min(0) / lam_max.clamp_min(JITTER)


def collapse_loss(z: Tensor, eta: float | Tensor, *, generator: torch.Generator,
                  stable_rank_sign: int = 1, normalize: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
    """L_coll(m*) of Eq. (12) for the batch embeddings ``z [n, d]``; returns (loss, detached diagnostics).

    ``eta`` may be a tensor that requires grad (it is a meta-parameter the hyper-gradient differentiates).
    The noise is drawn from ``generator`` (on its own device) and moved to ``z``'s device.

    ``normalize`` (ModalImmune's default, ``collapse_scale="normalized"``): the pull term is divided by the
    batch's detached mean squared norm ``(1/n) Σ ‖z_i‖²``, so L_coll is dimensionless: scaling the embeddings by
    c leaves its value and its balance against λ·η·stable_rank (already scale-free) unchanged, and its gradient
    scales as 1/c instead of c. Without it (Eq. 12 as printed) the term grows with the square of the
    embedding scale: on raw-scale features it reached 500–3700 and swamped the task loss.
    """
    n, d = z.shape
    rho = torch.linalg.matrix_norm(z.detach().float(), ord=2)
    sigma = rho / math.sqrt(d)
    eps = torch.randn((n, d), generator=generator, device=generator.device).to(z.device, z.dtype) * sigma
    pull = ((z - eps) ** 2).sum(1).mean()
    if normalize:
        pull = pull / (z.detach() ** 2).sum(1).mean().clamp_min(1e-12)
    sr = stable_rank(batch_covariance(z))
    loss = pull + stable_rank_sign * eta * sr
    return loss, {"stable_rank": sr.detach(), "sigma": sigma, "pull": pull.detach()}
