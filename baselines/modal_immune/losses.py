"""ModalImmune's per-batch objectives (Fu et al., arXiv 2602.16197, §3.6, Eq. 4–8, 16), shared by the training
loop (``train.py``), BHGD (``meta.py``) and the method contract's ``training_loss``.

Shapes: ``z [N, M, d]`` (one embedding per modality, spec order); masks ``[N, M]`` bool; losses 0-d.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from baselines.modal_immune.bandit import info_gain
from baselines.modal_immune.collapse import collapse_loss
from harness.data import Batch

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
    """Task loss per sample, ``[N]``: cross-entropy, or the configured regression loss (MSE by default, §3.6)."""
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


def sdl_task_loss(model: ModalImmune, batch: Batch, target: int) -> tuple[Tensor, Tensor]:
    """L_task + γ·L_con of Eq. (6) with m* omitted from fusion; returns (loss, z [N, M, d]). m*'s slot gets the
    mask token or G_m's surrogate (``sdl_fill``); its real embedding z_m* still flows into L_coll."""
    c, net = model.config, model.net
    enc = net.encode(batch)
    available = enc.present.clone()
    available[:, target] = False
    tokens, _ = net.fill(enc.z, available, use_generator=c.sdl_fill == "generator")
    loss = model.task_loss(net.predict_from(tokens), batch.y)
    if c.gamma_con > 0:
        loss = loss + c.gamma_con * net.contrastive_loss(enc.z, available, c.con_temperature)
    return loss, enc.z


def collapse_term(model: ModalImmune, z: Tensor, target: int, xi: dict[str, Tensor],
                  generator: torch.Generator) -> Tensor:
    """λ·L_coll(m*) (Eq. 7, 12) of the embeddings ``z [N, M, d]``; a graph-connected zero without ``use_collapse``."""
    c = model.config
    if not c.use_collapse:
        return z.sum() * 0.0
    coll, _ = collapse_loss(z[:, target], xi["eta"], generator=generator, stable_rank_sign=c.stable_rank_sign,
                            normalize=c.collapse_scale == "normalized")
    return xi["lambda"] * coll


def sdl_loss(model: ModalImmune, batch: Batch, target: int, xi: dict[str, Tensor],
             generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """L_SDL (Eq. 6–7); returns (total loss, the collapse term λ·L_coll, z [N, M, d])."""
    loss, z = sdl_task_loss(model, batch, target)
    coll = collapse_term(model, z, target, xi, generator)
    return loss + coll, coll, z


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
