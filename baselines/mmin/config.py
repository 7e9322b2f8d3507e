"""MMIN's frozen config. Defaults follow the paper's IEMOCAP recipe (``scripts/CAP_mmin.sh`` and
``scripts/CAP_utt_fusion.sh`` in AIM3-RUC/MMIN) unless a comment says otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from baselines.base import MethodConfig


@dataclass(frozen=True)
class MMINConfig(MethodConfig):
    """Two stages in one cell: the full-modality teacher, then MMIN.

    Schedules (both stages): of a stage's E epochs, the last ``D = round(decay_fraction * E)`` decay the learning
    rate linearly (factor ``1 - k / (D + 1)`` after the k-th decay epoch, as the reference's
    ``lr_policy='linear'``); the first ``E - D`` keep it constant. Paper: MMIN 30 + 30 epochs, teacher 10 + 10,
    i.e. ``epochs`` 60, ``teacher_epochs`` 20, ``decay_fraction`` 0.5 (the defaults). A fraction rather than an
    epoch count keeps the schedule's shape when ``epochs`` is overridden for a quick run. The paper trains every
    epoch and keeps the best validation epoch; the large ``patience`` keeps that (no early stop).

    MMIN stage: ``batch_size`` 128, Adam with ``beta1`` 0.5 (the reference's default; its MMIN script does not
    override it) and L2 ``weight_decay`` 1e-5 (the script's value; see docs/baselines.md on whether the reference
    applies it), ``lr`` 2e-4, ``grad_clip`` 1.0 applied per sub-network (each encoder, each autoencoder, the
    classifier), classifier ``dropout`` 0.5. Loss = ``task_weight`` x task + ``mse_weight`` x forward-imagination
    MSE + ``cycle_weight`` x cycle MSE (1 / 4 / 2). Teacher stage: same learning rate, weight decay and batch
    size, Adam ``teacher_beta1`` 0.9 (its script sets it), classifier dropout ``teacher_dropout`` 0.3,
    per-sub-network clip ``teacher_grad_clip`` 5.0 (``utt_fusion_model.py``). ``init``: ``'default'`` keeps
    PyTorch's initialisation; ``'kaiming'`` is the reference framework's ``init_net`` (Kaiming-normal fan-in
    weights and zero biases for Linear and convolution layers). The paper does not state an initialisation; the
    default deviates from the code because Kaiming init made the cascade autoencoder start with outputs ~30x the
    target scale and gave a much worse validation score on synth-mosi (docs/baselines.md).

    Architecture: ``embed`` 128 per modality (the LSTM hidden size, the TextCNN output and channel count);
    ``textcnn_modalities`` are encoded by a TextCNN with ``textcnn_kernels`` (3, 4, 5) and dropout
    ``textcnn_dropout`` 0.5, other sequences by an LSTM with max-pooling, utterance-level (T = 1) features by an
    MLP of width ``hidden``; the cascade residual autoencoder has ``n_blocks`` 5 blocks of ``ae_layers``
    (256, 128, 64); the classifier has hidden layers ``cls_layers`` (128, 128).
    """

    epochs: int = 60
    decay_fraction: float = 0.5
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 1e-5
    optimizer: str = "adam"
    beta1: float = 0.5
    patience: int = 1000
    grad_clip: float = 1.0
    dropout: float = 0.5
    hidden: int = 128
    embed: int = 128
    textcnn_modalities: tuple[str, ...] = ("text",)
    textcnn_kernels: tuple[int, ...] = (3, 4, 5)
    textcnn_dropout: float = 0.5
    ae_layers: tuple[int, ...] = (256, 128, 64)
    n_blocks: int = 5
    cls_layers: tuple[int, ...] = (128, 128)
    task_weight: float = 1.0
    mse_weight: float = 4.0
    cycle_weight: float = 2.0
    teacher_epochs: int = 20
    teacher_dropout: float = 0.3
    teacher_grad_clip: float = 5.0
    teacher_beta1: float = 0.9
    init: Literal["default", "kaiming"] = "default"

    def __post_init__(self) -> None:
        super().__post_init__()  # types first (tuples of ints, ...), so the range checks below can compare
        self.check("decay_fraction", 0 <= self.decay_fraction <= 1, "in [0, 1]")
        self.check("embed", self.embed >= 1, ">= 1")
        self.check("textcnn_kernels", len(self.textcnn_kernels) >= 1 and min(self.textcnn_kernels) >= 1,
                   "at least one kernel height, each >= 1")
        self.check("textcnn_dropout", 0 <= self.textcnn_dropout < 1, "in [0, 1)")
        self.check("ae_layers", len(self.ae_layers) >= 1 and min(self.ae_layers) >= 1,
                   "at least one layer, each width >= 1")
        self.check("n_blocks", self.n_blocks >= 1, ">= 1")
        self.check("cls_layers", all(w >= 1 for w in self.cls_layers), "widths >= 1 (may be empty)")
        for name in ("task_weight", "mse_weight", "cycle_weight"):
            self.check(name, getattr(self, name) >= 0, ">= 0")
        self.check("task_weight", self.task_weight > 0, "> 0 (the classifier is trained only by the task loss)")
        self.check("teacher_epochs", self.teacher_epochs >= 1, ">= 1")
        self.check("teacher_dropout", 0 <= self.teacher_dropout < 1, "in [0, 1)")
        self.check("teacher_grad_clip", self.teacher_grad_clip >= 0, ">= 0 (0 disables clipping)")
        self.check("optimizer", self.optimizer == "adam", "'adam' (the reference's optimiser)")
        for name in ("beta1", "teacher_beta1"):
            self.check(name, 0 <= getattr(self, name) < 1, "in [0, 1)")
        self.check("init", self.init in ("default", "kaiming"), "'default' or 'kaiming'")
