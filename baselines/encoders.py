"""Per-modality encoders shared by the baselines, so that comparisons differ in the method, not the backbone.

Every encoder maps ``x`` float ``[N, T, D]`` with ``lengths`` int64 ``[N]`` to an embedding ``[N, out]``.
:func:`encoder_for` builds the family a method config names (``seq_encoder`` for sequences, ``utt_encoder`` for
utterance-level features), which is the run's shared backbone unless the method is opted out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from harness.data import DatasetSpec

if TYPE_CHECKING:
    from baselines.base import MethodConfig


def lstm_scan(lstm: nn.LSTM, x: Tensor) -> Tensor:
    """The outputs ``[N, T, H * directions]`` of a one-layer, batch-first ``nn.LSTM`` computed step by step from
    its own parameters (gate order i, f, g, o; zero initial state), with the same padding semantics (the
    backward direction starts at step T - 1, padding included).

    Written with plain matrix products so that ``torch.func.vmap`` can batch it over stacked parameters
    ``[K, ...]`` (``nn.LSTM``'s fused kernel has no batching rule): the stacked executor trains K seeds as one
    computation through this path. Equal to ``lstm(x)[0]`` up to float rounding (tested).
    """
    outs = []
    for suffix, reverse in (("", False), ("_reverse", True)) if lstm.bidirectional else (("", False),):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l0{suffix}"), getattr(lstm, f"weight_hh_l0{suffix}")
        bias = getattr(lstm, f"bias_ih_l0{suffix}") + getattr(lstm, f"bias_hh_l0{suffix}")
        inputs = (x @ w_ih.transpose(0, 1) + bias).unbind(1)  # T x [N, 4H]: the input projection at once
        h = x.new_zeros(x.shape[0], w_hh.shape[1])
        c = torch.zeros_like(h)
        steps = []
        for gx in reversed(inputs) if reverse else inputs:
            i, f, g, o = (gx + h @ w_hh.transpose(0, 1)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            steps.append(h)
        outs.append(torch.stack(steps[::-1] if reverse else steps, dim=1))
    return torch.cat(outs, dim=-1)


class LSTMEncoder(nn.Module):
    """LSTM over time; the embedding is a projection of the hidden state at each sample's last valid step.

    For a unidirectional LSTM that state equals the one a packed sequence would give, without packing's cost.
    With ``bidirectional=True`` the backward direction also reads the zero padding; pooling is then a masked
    mean over valid steps, which padding cannot shift. ``scan = True`` computes the LSTM with
    :func:`lstm_scan` (for stacked training under ``vmap``); the parameters are the same.
    """

    scan = False

    def __init__(self, d_in: int, hidden: int, out: int, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        self.bidirectional = bidirectional
        self.lstm = nn.LSTM(d_in, hidden, batch_first=True, bidirectional=bidirectional)
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden * (2 if bidirectional else 1), out))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        h = lstm_scan(self.lstm, x) if self.scan else self.lstm(x)[0]  # [N, T, H]
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


def valid_steps(lengths: Tensor, steps: int) -> Tensor:
    """Bool ``[N, steps]``: True where a step is inside each sample's valid length."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


class LSTMMaxPoolEncoder(nn.Module):
    """MMIN's acoustic/visual encoder: a unidirectional LSTM whose hidden size is the embedding size, max-pooled
    over time (Zhao et al., ACL 2021, Sec. 3.1; ``LSTMEncoder(embd_method='maxpool')`` in their code).

    ``x [N, T, D]`` -> ``[N, out]``. The max runs over each sample's valid steps only (the reference pools over
    the padded tensor, so its embedding can depend on how much padding a batch has).
    """

    scan = False

    def __init__(self, d_in: int, out: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(d_in, out, batch_first=True)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        h = lstm_scan(self.lstm, x) if self.scan else self.lstm(x)[0]  # [N, T, out]
        h = h.masked_fill(~valid_steps(lengths, h.shape[1]).unsqueeze(-1), float("-inf"))
        return h.amax(dim=1)


class TextCNNEncoder(nn.Module):
    """MMIN's lexical encoder (Kim-style TextCNN, Sec. 3.1): one 1-D convolution per kernel height (3/4/5) over
    the token sequence, ReLU, max over positions, concatenation, dropout, ``Linear + ReLU`` to ``out``.

    ``x [N, T, D]`` -> ``[N, out]``. Only windows that lie inside a sample's valid length are pooled (a sample
    shorter than a kernel uses its first window, zero
    beyond its length); sequences shorter than the largest kernel are zero-padded.
    """

    def __init__(self, d_in: int, out: int, kernels: tuple[int, ...] = (3, 4, 5), channels: int = 128,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.kernels = kernels
        self.convs = nn.ModuleList(nn.Conv1d(d_in, channels, k) for k in kernels)
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels * len(kernels), out), nn.ReLU())

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        x = x * valid_steps(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)  # a short sample's window sees zeros
        pad = max(self.kernels) - x.shape[1]
        xt = nn.functional.pad(x, (0, 0, 0, max(pad, 0))).transpose(1, 2)  # [N, D, T']
        pooled = []
        for k, conv in zip(self.kernels, self.convs, strict=True):
            act = torch.relu(conv(xt))  # [N, C, T' - k + 1], all >= 0, so zeroing invalid windows keeps the max
            last_start = (lengths - k).clamp_min(0) + 1
            pooled.append((act * valid_steps(last_start, act.shape[-1]).unsqueeze(1)).amax(dim=-1))
        return self.proj(torch.cat(pooled, dim=-1))


def make_encoder(d_in: int, seq_len: int, hidden: int, out: int, dropout: float = 0.0, **kw: bool) -> nn.Module:
    """An LSTM for sequences (T > 1), an MLP for utterance-level features (T = 1)."""
    if seq_len > 1:
        return LSTMEncoder(d_in, hidden, out, dropout, **kw)
    return MLPEncoder(d_in, hidden, out, dropout)


def encoder_for(d_in: int, seq_len: int, config: MethodConfig, out: int | None = None) -> nn.Module:
    """The encoder family ``config`` names for a modality of width ``d_in`` and padded length ``seq_len``:
    ``utt_encoder`` (an MLP of width ``hidden``) when T = 1, else ``seq_encoder``: ``lstm`` (last valid state),
    ``bilstm`` (masked mean over both directions) or ``lstm_maxpool`` (hidden = ``out``, max over valid steps).
    ``out`` defaults to ``config.embed``."""
    out = config.embed if out is None else out
    if seq_len == 1:
        return MLPEncoder(d_in, config.hidden, out, config.dropout)
    if config.seq_encoder == "lstm_maxpool":
        return LSTMMaxPoolEncoder(d_in, out)
    return LSTMEncoder(d_in, config.hidden, out, config.dropout, bidirectional=config.seq_encoder == "bilstm")


def modality_encoders(spec: DatasetSpec, config: MethodConfig) -> nn.ModuleDict:
    """One encoder per modality of ``spec`` (:func:`encoder_for`), keyed by modality name."""
    return nn.ModuleDict({m: encoder_for(d, t, config)
                          for m, d, t in zip(spec.modalities, spec.dims, spec.seq_lens, strict=True)})


def mlp_head(d_in: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))
