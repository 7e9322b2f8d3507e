"""ModalImmune's network (Fu et al., arXiv 2602.16197, §3.3–3.6): encoders, property vectors, generators,
back-translation, an attention fusion hub and a task head, with the auxiliary losses of Eq. (4)–(5).

Shapes: ``z`` is ``[N, M, d]`` (one embedding per modality, spec order), ``present`` ``[N, M]`` bool.
A modality that is unavailable (missing at test, masked in a reconstruction batch, or the SDL target) is never
encoded into the fused input: its slot is filled by the generator's surrogate or the learnable mask token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.encoders import encoder_for, mlp_head
from harness.data import Batch, DatasetSpec


@dataclass
class Encoded:
    """Per-modality embeddings of a batch: ``z [N, M, d]`` from the real inputs and the availability mask."""

    z: Tensor
    present: Tensor


class ModalImmuneNet(nn.Module):
    """Encoders f_m, property vectors p_m, generators G_m, back-translators B_m, fusion hub F and head C."""

    def __init__(self, spec: DatasetSpec, c) -> None:  # c: ModalImmuneConfig
        super().__init__()
        self.spec, self.c = spec, c
        d, mods = c.embed, spec.modalities
        self.encoders = nn.ModuleDict({  # the run's backbone (paper mode: Bi-LSTMs), embedding size d
            m: encoder_for(dim, t, c, out=d) for m, dim, t in zip(mods, spec.dims, spec.seq_lens, strict=True)
        })
        # Only what the configuration uses is built, so every parameter is trained (the method contract).
        sdl_mask = c.p_sdl > 0 and c.sdl_fill == "mask_token"
        if sdl_mask or not c.use_generator or c.missing_fill == "mask_token":
            self.mask_token = nn.Parameter(torch.randn(len(mods), d) * 0.02)
        if c.use_property and c.use_generator:
            self.property = nn.Parameter(torch.randn(len(mods), c.property_dim) * 0.02)
            if c.beta_pe > 0:
                self.property_proj = nn.Linear(c.property_dim, d)  # p_m -> the embedding space, for L_pe
        gen_in = d + (c.property_dim if c.use_property else 0)
        if c.use_generator:
            self.generators = nn.ModuleDict({m: mlp_head(gen_in, 2 * d, d, 0.0) for m in mods})
            if c.use_back_translation and c.alpha_re > 0:
                self.back = nn.ModuleDict({m: mlp_head(d, 2 * d, d, 0.0) for m in mods})
        if c.use_fusion:
            layer = nn.TransformerEncoderLayer(d, c.fusion_heads, 2 * d, c.dropout, batch_first=True)
            self.fusion: nn.Module = nn.TransformerEncoder(layer, c.fusion_layers, enable_nested_tensor=False)
        else:  # Table 5's "w/o fusion module": the tokens are only averaged
            self.fusion = nn.Identity()
        self.modality_pos = nn.Parameter(torch.zeros(len(mods), d))
        self.head = mlp_head(d, c.hidden, spec.num_outputs, c.dropout)

    # -- encoding and fusion -----------------------------------------------------------------------------
    def encode(self, batch: Batch) -> Encoded:
        """Embeddings of every modality from its (zero-filled if unavailable) input: ``[N, M, d]``."""
        zs = []
        for j, m in enumerate(self.spec.modalities):
            keep = batch.present[:, j].view(-1, 1, 1).to(batch.x[m].dtype)
            zs.append(self.encoders[m](batch.x[m] * keep, batch.lengths[m]))
        return Encoded(torch.stack(zs, 1), batch.present)

    def synthesize(self, z: Tensor, available: Tensor) -> Tensor:
        """Surrogates ẑ for every modality from the mean of the available embeddings and p_m: ``[N, M, d]``."""
        context = mean_available(z, available)  # [N, d]
        outs = []
        for j, m in enumerate(self.spec.modalities):
            inp = context
            if self.c.use_property:
                inp = torch.cat([context, self.property[j].expand(len(z), -1)], -1)
            outs.append(self.generators[m](inp))
        return torch.stack(outs, 1)

    def fill(self, z: Tensor, available: Tensor, use_generator: bool = True) -> tuple[Tensor, Tensor | None]:
        """Fusion input: real embeddings where available, surrogate (or mask token) elsewhere."""
        surrogate = self.synthesize(z, available) if (use_generator and self.c.use_generator) else None
        substitute = surrogate if surrogate is not None else self.mask_token.expand_as(z)
        return torch.where(available.unsqueeze(-1), z, substitute), surrogate

    def predict_from(self, tokens: Tensor) -> Tensor:
        """Fusion hub over the M modality tokens (or none, ``use_fusion=False``), mean-pooled, then the head."""
        u = self.fusion(tokens + self.modality_pos).mean(1)
        out = self.head(u)
        return out.squeeze(-1) if self.spec.task == "regression" else out

    def forward(self, batch: Batch) -> Tensor:
        enc = self.encode(batch)
        tokens, _ = self.fill(enc.z, enc.present, use_generator=self.c.missing_fill == "generator")
        return self.predict_from(tokens)

    # -- auxiliary losses (Eq. 5) --------------------------------------------------------------------------
    def reconstruction_loss(self, z: Tensor, surrogate: Tensor, available: Tensor, present: Tensor) -> Tensor:
        """L_re: surrogates of masked-but-observed modalities regress their real (detached) embeddings; with
        back-translation, B_m(ẑ_m) also regresses the available context (the cycle, our "mirror involution")."""
        target = (present & ~available).to(z.dtype)  # [N, M]: masked in this batch but observed in the data
        loss = masked_mean(((surrogate - z.detach()) ** 2).mean(-1), target)
        if hasattr(self, "back"):
            context = mean_available(z, available).detach()  # [N, d]
            back = torch.stack([self.back[m](surrogate[:, j]) for j, m in enumerate(self.spec.modalities)], 1)
            loss = loss + masked_mean(((back - context.unsqueeze(1)) ** 2).mean(-1), target)
        return loss

    def property_loss(self, z: Tensor, present: Tensor) -> Tensor:
        """L_pe: the projected property vector W p_m regresses the batch mean of modality m's embeddings."""
        w = present.to(z.dtype).unsqueeze(-1)
        means = ((z * w).sum(0) / w.sum(0).clamp_min(1.0)).detach()  # [M, d]
        return F.mse_loss(self.property_proj(self.property), means)

    def contrastive_loss(self, z: Tensor, available: Tensor, temperature: float) -> Tensor:
        """L_con: symmetric InfoNCE between every pair of modalities, over samples where both are available.

        Unavailable samples are masked out of the logits instead of indexed away, so no step waits for the host.
        """
        zn = F.normalize(z, dim=-1)
        target = torch.arange(len(z), device=z.device)
        losses = []
        for a in range(z.shape[1]):
            for b in range(a + 1, z.shape[1]):
                rows = available[:, a] & available[:, b]
                logits = (zn[:, a] @ zn[:, b].T / temperature).masked_fill(~rows[None, :], -1e4)
                ce = F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(
                    logits.T.masked_fill(~rows[None, :], -1e4), target, reduction="none")
                losses.append(masked_mean(0.5 * ce, rows.to(z.dtype)))
        return torch.stack(losses).mean() if losses else z.sum() * 0.0


def mean_available(z: Tensor, available: Tensor) -> Tensor:
    """Mean of the available modalities' embeddings: ``[N, M, d] -> [N, d]``."""
    w = available.to(z.dtype).unsqueeze(-1)
    return (z * w).sum(1) / w.sum(1).clamp_min(1.0)


def masked_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Mean of ``values`` over entries with weight 1 (0 when there are none), without a host sync."""
    return (values * weights).sum() / weights.sum().clamp_min(1.0)
