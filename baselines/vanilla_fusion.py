"""Vanilla fusion: per-modality encoders, concatenation, an MLP head. No robustness training.

The no-robustness reference every other method is compared with. A missing modality's raw input is
zero-filled before its encoder (MMIN's ``utt_fusion`` and MMSA's late-fusion DNN do the same), so the model
sees at test time an input distribution it never saw in training: exactly the gap robust methods close.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from baselines.base import Method, MethodCard, MethodConfig, Reported
from baselines.encoders import mlp_head, modality_encoders
from harness.data import Batch, DatasetSpec
from harness.registry import METHODS


@dataclass(frozen=True)
class VanillaFusionConfig(MethodConfig):
    """``embed``: per-modality embedding size; ``hidden``: LSTM and head width."""

    embed: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("embed", self.embed >= 1, ">= 1")


@METHODS.register("vanilla_fusion")
class VanillaFusion(Method):
    """Late fusion by concatenation of per-modality embeddings (LF-DNN / MultiBench LF style)."""

    Config = VanillaFusionConfig
    card = MethodCard(
        paper="Late-fusion baseline as in MultiBench (Liang et al., NeurIPS 2021 D&B) and MMSA's LF-DNN",
        url="https://arxiv.org/abs/2107.07502",
        code="pliang279/MultiBench (fusions/common_fusions.py Concat); thuiar/MMSA (models/singleTask/LF_DNN.py)",
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
        c = config
        self.encoders = modality_encoders(spec, c.hidden, c.embed, c.dropout)
        self.head = mlp_head(c.embed * len(spec.modalities), c.hidden, spec.num_outputs, c.dropout)

    def embed(self, batch: Batch) -> Tensor:
        """Concatenated embeddings ``[N, M * embed]``; missing modalities' inputs are zero-filled first."""
        parts = []
        for j, m in enumerate(self.spec.modalities):
            keep = batch.present[:, j].view(-1, 1, 1).to(batch.x[m].dtype)
            parts.append(self.encoders[m](batch.x[m] * keep, batch.lengths[m]))
        return torch.cat(parts, dim=-1)

    def forward(self, batch: Batch) -> Tensor:
        out = self.head(self.embed(batch))
        return out.squeeze(-1) if self.spec.task == "regression" else out
