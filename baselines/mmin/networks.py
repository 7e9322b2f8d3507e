"""MMIN's building blocks (Zhao, Li, Jin, ACL 2021, Sec. 3): encoders, cascade residual autoencoder, classifier,
and the full-modality teacher ``UttFusion`` (MMIN's ``utt_fusion``), which is a Method but is never registered.

Shapes: modality ``m`` has input ``[N, T_m, D_m]``; every encoder maps it to ``[N, E]`` (E = ``embed``, 128 in the
paper); the fused vector is ``[N, M * E]`` in the spec's modality order (384 for three modalities).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from baselines.base import Method, MethodCard
from baselines.encoders import TextCNNEncoder, encoder_for
from baselines.mmin.config import MMINConfig
from harness.data import Batch, DatasetSpec


def mmin_encoders(spec: DatasetSpec, config: MMINConfig) -> nn.ModuleDict:
    """Per modality: a TextCNN for the lexical modalities (``config.textcnn_modalities``) when T > 1, otherwise the
    config's backbone encoder (``encoder_for``: the run's shared family, or MMIN's max-pooled LSTM and utterance
    MLP in paper mode)."""
    encoders: dict[str, nn.Module] = {}
    for m, d, t in zip(spec.modalities, spec.dims, spec.seq_lens, strict=True):
        if t > 1 and m in config.textcnn_modalities:
            encoders[m] = TextCNNEncoder(d, config.embed, config.textcnn_kernels, config.embed, config.textcnn_dropout)
        else:
            encoders[m] = encoder_for(d, t, config)
    return nn.ModuleDict(encoders)


def encode(encoders: nn.ModuleDict, batch: Batch, keep: Tensor) -> Tensor:
    """``[N, M * E]``: each modality's encoder on its input multiplied by ``keep[:, m]`` (bool ``[N, M]``).

    With ``keep = present`` this is MMIN's view of an incomplete sample (missing inputs zero-filled); with
    ``keep = ~kept_pattern`` it is the teacher's view of only the missing modalities (Sec. 3.2).
    """
    parts = []
    for j, m in enumerate(encoders):
        parts.append(encoders[m](batch.x[m] * keep[:, j].view(-1, 1, 1).to(batch.x[m].dtype), batch.lengths[m]))
    return torch.cat(parts, dim=-1)


def kaiming_init(module: nn.Module) -> None:
    """The reference's ``init_net(init_type='kaiming')``: Kaiming-normal (fan-in) weights and zero biases for every
    Linear and convolution layer; recurrent layers keep PyTorch's initialisation."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv1d)):
            nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_in")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def fc_classifier(d_in: int, layers: tuple[int, ...], n_out: int, dropout: float) -> nn.Sequential:
    """MMIN's ``FcClassifier``: ``(Linear, ReLU, Dropout)`` per hidden layer, then a linear output layer."""
    mods: list[nn.Module] = []
    for width in layers:
        mods += [nn.Linear(d_in, width), nn.ReLU(), nn.Dropout(dropout)]
        d_in = width
    return nn.Sequential(*mods, nn.Linear(d_in, n_out))


class ResidualAE(nn.Module):
    """Cascade residual autoencoder (Sec. 3.2, Fig. 2). ``layers = (256, 128, 64)`` gives each block an encoder
    ``d -> 256 -> 128 -> 64`` (LeakyReLU between, none after the latent) and a decoder ``64 -> 128 -> 256 -> d``
    (ReLU between). Block ``i`` reads ``x_i = x_{i-1} + out_{i-1}`` (``x_0`` = input, ``out_0`` = 0); the output is
    ``transition(x_k + out_k)`` with ``transition = Linear, ReLU, Linear``.

    ``x [N, d]`` -> (reconstruction ``[N, d]``, concatenated block latents ``[N, n_blocks * layers[-1]]``).
    """

    def __init__(self, d: int, layers: tuple[int, ...], n_blocks: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(self._stack((d, *layers), nn.LeakyReLU) for _ in range(n_blocks))
        self.decoders = nn.ModuleList(self._stack((*layers[::-1], d), nn.ReLU) for _ in range(n_blocks))
        self.transition = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

    @staticmethod
    def _stack(widths: tuple[int, ...], act: type[nn.Module]) -> nn.Sequential:
        mods: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            mods += [nn.Linear(a, b), act()]
        return nn.Sequential(*mods[:-1])  # no activation after the last layer

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_in, x_out, latents = x, torch.zeros_like(x), []
        for enc, dec in zip(self.encoders, self.decoders, strict=True):
            x_in = x_in + x_out
            latent = enc(x_in)
            x_out = dec(latent)
            latents.append(latent)
        return self.transition(x_in + x_out), torch.cat(latents, dim=-1)


class UttFusion(Method):
    """The full-modality teacher (MMIN's ``utt_fusion``, Sec. 4.2): MMIN's encoders, concatenation,
    ``FcClassifier(M * E, cls_layers, dropout = config.teacher["dropout"])``. Built and trained inside MMIN's ``fit``
    on complete training data; never registered. Reads the same ``MMINConfig`` as MMIN."""

    Config = MMINConfig
    card = MethodCard(paper="MMIN's full-modality teacher (utt_fusion), Zhao et al., ACL 2021",
                      code="AIM3-RUC/MMIN (models/utt_fusion_model.py)")

    def __init__(self, spec: DatasetSpec, config: MMINConfig) -> None:
        super().__init__(spec, config)
        self.encoders = mmin_encoders(spec, config)
        d = config.embed * len(spec.modalities)
        self.head = fc_classifier(d, config.cls_layers, spec.num_outputs, float(config.teacher["dropout"]))

    def forward(self, batch: Batch) -> Tensor:
        out = self.head(encode(self.encoders, batch, batch.present))
        return out.squeeze(-1) if self.spec.task == "regression" else out

    def clip_groups(self) -> list[nn.Module]:
        """Sub-networks whose gradients are clipped separately, as the reference clips each ``net*``."""
        return [*self.encoders.values(), self.head]
