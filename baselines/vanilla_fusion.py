"""Vanilla fusion: per-modality encoders, concatenation, an MLP head. No robustness training.

The no-robustness reference every other method is compared with. A missing modality's raw input is
zero-filled before its encoder (MMIN's ``utt_fusion`` and MMSA's late-fusion DNN do the same), so the model
sees at test time an input distribution it never saw in training: exactly the gap robust methods close.

``fusion`` selects where the modalities meet:

- ``late`` (default; MultiBench ``Concat``, MMSA LF-DNN): one encoder per modality, embeddings concatenated.
- ``early`` (MultiBench ``ConcatEarly``, MMSA EF-LSTM): features concatenated per time step, one shared
  encoder. Sequences are zero-padded to the longest ``T_m`` and step ``t`` of every modality is joined, which is
  early fusion proper only for word-aligned data; on unaligned data it is a positional join. The fused length
  is the longest valid length among the *available* modalities, so an absent modality's length is never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from baselines.base import Method, MethodCard, MethodConfig, Reported
from baselines.encoders import encoder_for, mlp_head, modality_encoders
from harness.data import Batch, DatasetSpec
from harness.registry import METHODS


@dataclass(frozen=True)
class VanillaFusionConfig(MethodConfig):
    """The shared backbone's fields (``embed``: per-modality embedding size, the fused vector is ``M * embed``
    either way; ``hidden``: encoder and head width) plus ``fusion``: ``late`` (per-modality encoders) or
    ``early`` (one encoder over the per-step concatenation). Its "paper" settings are the shared backbone
    itself: a late-fusion LSTM/MLP with an L1 loss, as MultiBench's LF and MMSA's LF-DNN."""

    fusion: Literal["late", "early"] = "late"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("fusion", self.fusion in ("late", "early"), "'late' or 'early'")


@METHODS.register("vanilla_fusion")
class VanillaFusion(Method):
    """Late fusion by concatenation of per-modality embeddings (LF-DNN / MultiBench LF style)."""

    Config = VanillaFusionConfig
    stackable = True  # standard stage, vmap-able layers (LSTMs run as lstm_scan when stacked)
    card = MethodCard(
        label="Vanilla fusion",
        paper="Late-fusion baseline as in MultiBench (Liang et al., NeurIPS 2021 D&B) and MMSA's LF-DNN",
        url="https://arxiv.org/abs/2107.07502",
        code="pliang279/MultiBench (fusions/common_fusions.py Concat); thuiar/MMSA (models/singleTask/LF_DNN.py)",
        reference=True,
        reported=(
            Reported("mosi", "acc2_non0", 0.7863, source="MMSA results/result-stat.md, lf_dnn, 5 seeds"),
            Reported("mosi", "f1_non0", 0.7863, source="MMSA results/result-stat.md, lf_dnn, 5 seeds"),
            Reported("mosi", "acc7", 0.3452, source="MMSA results/result-stat.md, lf_dnn, 5 seeds"),
            Reported("mosi", "mae", 0.9548, source="MMSA results/result-stat.md, lf_dnn, 5 seeds"),
            Reported("mosi", "corr", 0.6584, source="MMSA results/result-stat.md, lf_dnn, 5 seeds"),
        ),
    )

    def __init__(self, spec: DatasetSpec, config: VanillaFusionConfig) -> None:
        super().__init__(spec, config)
        c, n_mod = config, len(spec.modalities)
        if c.fusion == "late":
            self.encoders = modality_encoders(spec, c)
        else:
            self.early = encoder_for(sum(spec.dims), max(spec.seq_lens), c, out=c.embed * n_mod)
        self.head = mlp_head(c.embed * n_mod, c.hidden, spec.num_outputs, c.dropout)

    def embed(self, batch: Batch) -> Tensor:
        """Fused representation ``[N, M * embed]``; missing modalities' inputs are zero-filled first."""
        if self.config.fusion == "early":
            return self.embed_early(batch)
        parts = []
        for j, m in enumerate(self.spec.modalities):
            keep = batch.present[:, j].view(-1, 1, 1).to(batch.x[m].dtype)
            parts.append(self.encoders[m](batch.x[m] * keep, batch.lengths[m]))
        return torch.cat(parts, dim=-1)

    def embed_early(self, batch: Batch) -> Tensor:
        """Per-step concatenation ``[N, T_max, sum D_m]`` through one encoder -> ``[N, M * embed]``."""
        t_max = max(self.spec.seq_lens)
        steps, lengths = [], []
        for j, m in enumerate(self.spec.modalities):
            keep = batch.present[:, j]
            x = batch.x[m] * keep.view(-1, 1, 1).to(batch.x[m].dtype)
            steps.append(torch.nn.functional.pad(x, (0, 0, 0, t_max - x.shape[1])))
            lengths.append(batch.lengths[m] * keep)  # an absent modality contributes length 0
        length = torch.stack(lengths, dim=-1).amax(dim=-1).clamp_min(1)
        return self.early(torch.cat(steps, dim=-1), length)

    def forward(self, batch: Batch) -> Tensor:
        out = self.head(self.embed(batch))
        return out.squeeze(-1) if self.spec.task == "regression" else out
