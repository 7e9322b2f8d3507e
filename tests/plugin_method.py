"""A throw-away third-party method, registered on import (used by the plugin tests; installs nothing)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from baselines.base import Method, MethodCard
from harness.data import Batch
from harness.registry import METHODS

NAME = "test_plugin_mean"


class MeanOfModalities(Method):
    """Averages a linear read-out of each available modality's time-mean."""

    card = MethodCard(paper="test plugin")

    def __init__(self, spec, config) -> None:
        super().__init__(spec, config)
        pairs = zip(spec.modalities, spec.dims, strict=True)
        self.readout = nn.ModuleDict({m: nn.Linear(d, spec.num_outputs) for m, d in pairs})

    def forward(self, batch: Batch) -> Tensor:
        outs = torch.stack([self.readout[m](batch.x[m].mean(1)) for m in self.spec.modalities], 1)  # [N, M, C]
        w = batch.present.to(outs.dtype).unsqueeze(-1)
        out = (outs * w).sum(1) / w.sum(1).clamp_min(1)
        return out.squeeze(-1) if self.spec.task == "regression" else out


if NAME not in METHODS:
    METHODS.add(NAME, MeanOfModalities)
