"""MMIN's frozen config. The class defaults are the run's shared backbone (every backbone field of
``MethodConfig``) plus MMIN's own architecture; ``paper`` holds the paper's recipe (``scripts/CAP_mmin.sh`` and
``scripts/CAP_utt_fusion.sh`` of AIM3-RUC/MMIN, branch master at 69a45fe), used with ``backbone="paper"``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from baselines.base import MethodConfig

# MMIN's paper recipe (AIM3-RUC/MMIN master, 69a45fedff66fa0da74205ad425440c1ee8f6d1f): MMIN 30 + 30 epochs,
# teacher 10 + 10, linear decay over the second half, batch 128, Adam lr 2e-4 with beta1 0.5 (0.9 for the
# teacher, whose script sets it), no early stop (every epoch is trained, the best validation epoch kept),
# 128-d encoders (TextCNN for text, max-pooled LSTMs for audio and vision), classifier dropout 0.5 (0.3 for the
# teacher). Clipping: the teacher clips each sub-network at 0.5 (utt_fusion_model.py), MMIN at 1.0
# (mmin_model.py). Weight decay 0: the MMIN optimizer is built without the script's weight_decay=1e-5 and the
# teacher's script leaves the option at its default 0.0 (opts/get_opts.py). Init: the reference's init_net uses
# init_type 'kaiming' (Kaiming-normal fan-in weights, zero biases, Linear and Conv layers); measured on the
# validation split (docs/baselines.md) it is far worse than PyTorch's default here, so the recipe keeps PyTorch's
# and 'kaiming' stays an option. The teacher clip 0.5 and weight decay 0 were no worse than 5.0 and 1e-5.
PAPER = {
    "epochs": 60, "teacher_epochs": 20, "lr_schedule": "linear_decay", "decay_fraction": 0.5, "batch_size": 128,
    "lr": 2e-4, "optimizer": "adam", "beta1": 0.5, "teacher_beta1": 0.9, "weight_decay": 0.0, "patience": 1000,
    "grad_clip": 1.0, "teacher_grad_clip": 0.5, "dropout": 0.5, "teacher_dropout": 0.3, "hidden": 128,
    "embed": 128, "seq_encoder": "lstm_maxpool", "textcnn_modalities": ("text",), "init": "default",
    "regression_loss": "l1",
}


@dataclass(frozen=True)
class MMINConfig(MethodConfig):
    """Two stages in one cell: the full-modality teacher, then MMIN.

    Shared backbone (the class defaults): every encoder is the run's (``seq_encoder``/``utt_encoder``, ``hidden``,
    ``embed``), the budget is the run's for *each* of the two networks MMIN trains (the teacher gets
    ``teacher_epochs`` = ``epochs`` unless set, with the same patience), and the teacher uses the run's
    ``dropout``, ``grad_clip`` and ``beta1`` unless ``teacher_*`` is set. With ``backbone="paper"`` the
    :data:`PAPER` recipe above replaces them.

    MMIN's own architecture (both modes): ``textcnn_modalities`` are encoded by a TextCNN (kernels
    ``textcnn_kernels``, dropout ``textcnn_dropout``; paper: text) instead of ``seq_encoder``; the cascade residual
    autoencoder has ``n_blocks`` blocks of ``ae_layers``; the classifier has hidden layers ``cls_layers`` and
    dropout ``dropout``. Loss = ``task_weight`` x task + ``mse_weight`` x forward-imagination MSE +
    ``cycle_weight`` x cycle MSE (1 / 4 / 2). Gradients are clipped per sub-network (each encoder, each
    autoencoder, the classifier), as the reference does. ``init``: ``'default'`` keeps PyTorch's
    initialisation; ``'kaiming'`` is the reference's ``init_net`` (Kaiming-normal fan-in weights, zero biases,
    Linear and convolution layers; worse on validation than PyTorch's default in our measurement, so an option
    only, docs/baselines.md).
    """

    paper = PAPER

    textcnn_modalities: tuple[str, ...] = ()
    textcnn_kernels: tuple[int, ...] = (3, 4, 5)
    textcnn_dropout: float = 0.5
    ae_layers: tuple[int, ...] = (256, 128, 64)
    n_blocks: int = 5
    cls_layers: tuple[int, ...] = (128, 128)
    task_weight: float = 1.0
    mse_weight: float = 4.0
    cycle_weight: float = 2.0
    teacher_epochs: int | None = None
    teacher_dropout: float | None = None
    teacher_grad_clip: float | None = None
    teacher_beta1: float | None = None
    init: Literal["default", "kaiming"] = "default"

    def __post_init__(self) -> None:
        super().__post_init__()  # types first (tuples of ints, ...), so the range checks below can compare
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
        self.check("teacher_epochs", self.teacher_epochs is None or self.teacher_epochs >= 1, ">= 1 or none")
        self.check("teacher_dropout", self.teacher_dropout is None or 0 <= self.teacher_dropout < 1,
                   "in [0, 1) or none")
        self.check("teacher_grad_clip", self.teacher_grad_clip is None or self.teacher_grad_clip >= 0,
                   ">= 0 (0 disables clipping) or none")
        self.check("teacher_beta1", self.teacher_beta1 is None or 0 <= self.teacher_beta1 < 1, "in [0, 1) or none")
        self.check("init", self.init in ("default", "kaiming"), "'default' or 'kaiming'")

    @property
    def teacher(self) -> dict[str, float | int]:
        """The teacher stage's epochs, dropout, clip and beta1: its own where set, else the run's."""
        pick = {"epochs": (self.teacher_epochs, self.epochs), "dropout": (self.teacher_dropout, self.dropout),
                "grad_clip": (self.teacher_grad_clip, self.grad_clip), "beta1": (self.teacher_beta1, self.beta1)}
        return {k: own if own is not None else run for k, (own, run) in pick.items()}
