"""Per-modality encoders shared by the baselines, so that comparisons differ in the method, not the backbone.

Every encoder maps ``x`` float ``[N, T, D]`` with ``lengths`` int64 ``[N]`` to an embedding ``[N, out]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.data import DatasetSpec


class LSTMEncoder(nn.Module):
    """LSTM over time; the embedding is a projection of the hidden state at each sample's last valid step.

    For a unidirectional LSTM that state equals the one a packed sequence would give, without packing's cost.
    With ``bidirectional=True`` the backward direction also reads the zero padding; pooling is then a masked
    mean over valid steps, which padding cannot shift.
    """

    def __init__(self, d_in: int, hidden: int, out: int, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        self.bidirectional = bidirectional
        self.lstm = nn.LSTM(d_in, hidden, batch_first=True, bidirectional=bidirectional)
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden * (2 if bidirectional else 1), out))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        h, _ = self.lstm(x)  # [N, T, H]
        if self.bidirectional:
            steps = torch.arange(x.shape[1], device=x.device)
            valid = (steps[None, :] < lengths[:, None]).to(h.dtype).unsqueeze(-1)
            pooled = (h * valid).sum(1) / valid.sum(1).clamp_min(1)
        else:
            last = (lengths - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, h.shape[-1])
            pooled = h.gather(1, last).squeeze(1)
        return self.proj(pooled)


class MLPEncoder(nn.Module):
    """Two-layer MLP on utterance-level features (T = 1) or on the masked time-mean of a sequence."""

    def __init__(self, d_in: int, hidden: int, out: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out)
        )

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if x.shape[1] == 1:
            return self.net(x[:, 0])
        steps = torch.arange(x.shape[1], device=x.device)
        valid = (steps[None, :] < lengths[:, None]).to(x.dtype).unsqueeze(-1)
        return self.net((x * valid).sum(1) / valid.sum(1).clamp_min(1))


def make_encoder(d_in: int, seq_len: int, hidden: int, out: int, dropout: float = 0.0, **kw: bool) -> nn.Module:
    """An LSTM for sequences (T > 1), an MLP for utterance-level features (T = 1)."""
    if seq_len > 1:
        return LSTMEncoder(d_in, hidden, out, dropout, **kw)
    return MLPEncoder(d_in, hidden, out, dropout)


def modality_encoders(spec: DatasetSpec, hidden: int, out: int, dropout: float = 0.0, **kw: bool) -> nn.ModuleDict:
    """One encoder per modality of ``spec``, keyed by modality name."""
    return nn.ModuleDict(
        {
            m: make_encoder(d, t, hidden, out, dropout, **kw)
            for m, d, t in zip(spec.modalities, spec.dims, spec.seq_lens, strict=True)
        }
    )


def mlp_head(d_in: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))
