"""Modality dropout (ModDrop; Neverova et al., TPAMI 2016): vanilla fusion trained with per-sample modality removal.

The network is exactly ``vanilla_fusion`` (same encoders, fusion and head, so a comparison isolates the training
scheme). During training only (``augment``), every sample loses each modality ``m`` independently with
probability ``p[m]``, conditioned on keeping at least one: the keep mask of a sample is drawn *exactly* from the
product-Bernoulli distribution restricted to non-empty patterns. That is done on the device, without a host
sync: the ``2^M - 1`` non-empty patterns are enumerated once, each row gets a categorical draw over them (weights
``prod_m p_m^(1-k_m) (1-p_m)^k_m``, zero for patterns that keep none of the row's available modalities) from the
cell's generator (inverse CDF of one uniform per row). The resulting marginal drop rate of modality ``m`` is
``(p_m - prod_j p_j) / (1 - prod_j p_j)`` (0.281 for p = 0.3 and three modalities), slightly below ``p_m``.
At evaluation nothing is dropped; the model sees whatever ``present`` the protocol gives.

A dropped modality is represented as in vanilla fusion (``fill='zeros'``: its raw input is zeroed before its
encoder, as in MMIN's augmentation baseline) or by a learned per-modality embedding that replaces the
encoder output (``fill='token'``); the token is then also used for modalities missing at test time, so training
and evaluation represent absence the same way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from baselines.base import MethodCard
from baselines.vanilla_fusion import VanillaFusion, VanillaFusionConfig
from harness.data import Batch, DatasetSpec
from harness.registry import METHODS


@dataclass(frozen=True)
class ModalityDropoutConfig(VanillaFusionConfig):
    """Vanilla fusion's fields plus the dropout scheme.

    ``p``: drop probability per modality, one value for all or one per modality in the spec's order, each in
    [0, 1) (default 0.3 for all); ``fill``: ``zeros`` (zero the dropped input) or ``token`` (a learned embedding
    replaces the dropped modality's encoder output; needs ``fusion='late'``).
    """

    p: tuple[float, ...] = (0.3,)
    fill: Literal["zeros", "token"] = "zeros"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("p", len(self.p) >= 1, "a non-empty tuple of probabilities")  # the type is checked already
        self.check("p", all(0 <= v < 1 for v in self.p), "every value in [0, 1) (p = 1 would leave no modality)")
        self.check("fill", self.fill in ("zeros", "token"), "'zeros' or 'token'")
        self.check("fill", self.fill == "zeros" or self.fusion == "late", "'zeros' when fusion = 'early'")


@METHODS.register("modality_dropout")
class ModalityDropout(VanillaFusion):
    """Vanilla fusion + per-sample modality dropout at training time (see the module docstring)."""

    Config = ModalityDropoutConfig
    card = MethodCard(
        label="ModDrop",
        paper="Neverova, Wolf, Taylor, Nebout: ModDrop: adaptive multi-modal gesture recognition, TPAMI 2016; "
              "as the 'missing-data augmentation' baseline of Zhao et al., ACL 2021 (MMIN)",
        url="https://arxiv.org/abs/1501.00102",
        code="AIM3-RUC/MMIN (models/utt_dataaug_model.py) for the augmentation baseline; no ModDrop code was read",
        reported=(),
        notes="No number is carried: ModDrop reports gesture-recognition results (ChaLearn 2014), not on any "
              "dataset mibench has, and shared/reference/anchors.md Sec. 2 transcribes only MMIN's own row (from "
              "AIM3-RUC/MMIN#7, metric unstated), not the Table 3 row (WA/UA) of MMIN's augmentation baseline; "
              "add it under 'wa'/'ua' once Table 3 is transcribed. Deviations: no modality-wise pretraining of "
              "the paths (as we read ModDrop, it pretrains each path alone first; not checked against its text "
              "here); dropping happens at the raw input (or the embedding for fill='token'), per sample, with at "
              "least one modality kept; no rescaling.",
    )

    def __init__(self, spec: DatasetSpec, config: ModalityDropoutConfig) -> None:
        super().__init__(spec, config)
        n_mod = len(spec.modalities)
        if len(config.p) not in (1, n_mod):
            raise ValueError(f"ModalityDropoutConfig.p has {len(config.p)} values; {spec.name} needs 1 or {n_mod} "
                             f"(one per modality: {', '.join(spec.modalities)})")
        p = torch.tensor(config.p, dtype=torch.float32).expand(n_mod)
        patterns = torch.tensor(list(itertools.product([False, True], repeat=n_mod))[1:], dtype=torch.bool)
        kept = patterns.float()
        self.register_buffer("patterns", patterns, persistent=False)  # [K, M], K = 2^M - 1 non-empty patterns
        self.register_buffer("pattern_prob", (kept * (1 - p) + (1 - kept) * p).prod(-1), persistent=False)  # [K]
        if config.fill == "token":
            self.tokens = nn.Parameter(torch.randn(n_mod, config.embed) * 0.02)

    def keep_mask(self, present: Tensor, generator: torch.Generator) -> Tensor:
        """Bool ``[N, M]``: which modalities each row keeps; never drops all of a row's available modalities.

        A row with no available modality keeps everything (a no-op; such rows are not valid data anyway).
        """
        keeps_any = (self.patterns[None, :, :] & present[:, None, :]).any(-1)  # [N, K]
        weights = self.pattern_prob[None, :] * keeps_any
        empty = ~keeps_any.any(-1, keepdim=True)
        weights = torch.where(empty, self.patterns.all(-1).float()[None, :], weights)
        # Inverse-CDF categorical draw: one uniform per row, no host sync (unlike a Python-side rejection loop).
        cdf = weights.cumsum(-1)
        u = torch.rand(len(present), 1, generator=generator, device=generator.device).to(cdf.device)
        rows = (u * cdf[:, -1:] >= cdf).sum(-1).clamp_max(len(self.patterns) - 1)
        return self.patterns[rows]

    def augment(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Training only: drop modalities per sample (``Batch.drop`` zeroes them and updates ``present``)."""
        return batch.drop(self.keep_mask(batch.present, generator))

    def embed(self, batch: Batch) -> Tensor:
        """Vanilla fusion's embedding; with ``fill='token'`` absent modalities get their learned token."""
        z = super().embed(batch)
        if self.config.fill != "token":
            return z
        n, n_mod = len(batch), len(self.spec.modalities)
        z = z.view(n, n_mod, -1)
        z = torch.where(batch.present.unsqueeze(-1), z, self.tokens.unsqueeze(0).to(z.dtype))
        return z.reshape(n, -1)
