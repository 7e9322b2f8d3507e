"""MMIN: Missing Modality Imagination Network (Zhao, Li, Jin, ACL 2021), faithful to the paper and AIM3-RUC/MMIN.

Forward (Sec. 3, Fig. 2): each modality's encoder reads its input zero-filled where missing; the embeddings are
concatenated in the spec's order (``h [N, M * E]``); the cascade residual autoencoder ``ae`` imagines the
complete representation ``h' = ae(h)`` and the classifier reads the concatenated block latents
``[N, n_blocks * ae_layers[-1]]``. A second autoencoder ``ae_cycle`` maps ``h'`` back to ``h`` (cycle consistency).

Training, two stages of the one training loop (``stages``):

1. The teacher ``UttFusion`` (same encoders + classifier) is trained on complete training data and selected on
   the complete validation split whatever the run's ``--select`` (it is a full-modality model that never sees an
   incomplete input); it is then frozen (``requires_grad = False``, always in eval mode).
2. MMIN's encoders start from the teacher's. Each training sample gets one *incomplete* pattern uniformly at
   random from the ``2^M - 2`` non-empty proper subsets on every step, so training never sees a complete input.
   Loss = task + 4 MSE(h', t) + 2 MSE(ae_cycle(h'), h.detach()), where the imagination target
   ``t = concat_m teacher_enc_m(x_m if m is missing else 0)`` (``T_embds`` in the reference): the frozen teacher's
   embeddings of the *missing* modalities, with the *available* modalities' inputs zeroed (so their slots hold the
   teacher's embedding of a zero input), in the fixed modality order. Selection: the run's policy, like every
   other method; MMIN's paper protocol (the mean over the validation split's incomplete patterns, as the
   reference replicates validation over the patterns) is ``--select incomplete`` for the whole run.

At evaluation MMIN takes whatever ``present`` mask it is given (the full one included) and imagines what is
missing. The same network serves regression: the head's output size is 1 and the task loss is the config's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.base import Method, MethodCard
from baselines.mmin.config import MMINConfig
from baselines.mmin.networks import ResidualAE, UttFusion, encode, fc_classifier, kaiming_init, mmin_encoders
from harness.data import Batch, Dataset, DatasetSpec
from harness.registry import METHODS
from harness.selection import patterns
from harness.training import Budget, FitContext, Stage, StepOut

# Not in ``card.reported``: that field holds numbers under a registered metric, and reports show them as the paper's
# value of that metric. This row's metric (WA or UA) is unknown, so it stays prose until Table 3 is transcribed.
_ISSUE7_ROW = ("Reported numbers: none machine-readable. The only MMIN paper numbers transcribed so far "
               "(shared/reference/anchors.md Sec. 2) are one IEMOCAP row (10-fold CV, fixed missing patterns) quoted "
               "in AIM3-RUC/MMIN#7: {a} 59.00, {v} 51.60, {l} 68.02, {a,v} 65.43, {a,l} 75.14, {v,l} 73.61 (%). "
               "The issue does not say whether they are WA or UA, so they are not stored as either; copy Table 3 "
               "of the paper (WA and UA per condition) before adding them to `reported`.")


@METHODS.register("mmin")
class MMIN(Method):
    """Missing Modality Imagination Network; see the module docstring. Needs at least two modalities."""

    Config = MMINConfig
    card = MethodCard(
        label="MMIN",
        paper="Zhao, Li, Jin: Missing Modality Imagination Network for Emotion Recognition with Uncertain "
              "Missing Modalities, ACL 2021",
        url="https://doi.org/10.18653/v1/2021.acl-long.203",
        code="AIM3-RUC/MMIN, branch master (models/mmin_model.py, models/utt_fusion_model.py, "
             "models/networks/autoencoder.py, scripts/CAP_mmin.sh)",
        reported=(),
        notes="Training never sees complete inputs (only the 2^M - 2 incomplete patterns); the teacher is trained "
              "first in the same cell (its stage is in the fit's stages). See docs/baselines.md for deviations. "
              + _ISSUE7_ROW,
    )

    def __init__(self, spec: DatasetSpec, config: MMINConfig) -> None:
        super().__init__(spec, config)
        n_mod = len(spec.modalities)
        if n_mod < 2:
            raise ValueError(f"mmin needs at least two modalities to imagine a missing one; dataset {spec.name!r} "
                             f"has only {list(spec.modalities)}")
        unknown = [m for m in config.textcnn_modalities if m not in spec.modalities]
        if unknown:  # a typo would otherwise silently give that modality an LSTM instead of a TextCNN
            raise ValueError(f"MMINConfig.textcnn_modalities names {unknown}, which dataset {spec.name!r} does not "
                             f"have; its modalities are {list(spec.modalities)} (use () for no TextCNN encoder)")
        c, d = config, config.embed * n_mod
        self.encoders = mmin_encoders(spec, c)
        self.ae = ResidualAE(d, c.ae_layers, c.n_blocks)
        self.ae_cycle = ResidualAE(d, c.ae_layers, c.n_blocks)
        self.head = fc_classifier(c.ae_layers[-1] * c.n_blocks, c.cls_layers, spec.num_outputs, c.dropout)
        self.teacher = UttFusion(spec, c).requires_grad_(False)  # trained only by stage 1 of fit
        if c.init == "kaiming":
            kaiming_init(self)  # the encoders are overwritten by the teacher's before stage 2 anyway
        self.register_buffer("patterns", patterns(n_mod, "incomplete"), persistent=False)  # [2^M - 2, M]

    def train(self, mode: bool = True) -> MMIN:
        """MMIN's train/eval switch; the teacher stays in eval mode (its own stage trains it directly)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def imagine(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """``h [N, M*E]`` (missing inputs zero-filled), imagined ``h' [N, M*E]``, block latents ``[N, B*L]``."""
        h = encode(self.encoders, batch, batch.present)
        recon, latents = self.ae(h)
        return h, recon, latents

    def forward(self, batch: Batch) -> Tensor:
        out = self.head(self.imagine(batch)[2])
        return out.squeeze(-1) if self.spec.task == "regression" else out

    @torch.no_grad()
    def teacher_target(self, batch: Batch, keep: Tensor) -> Tensor:
        """``[N, M*E]``: the frozen teacher's embeddings of the modalities *not* in ``keep``, kept inputs zeroed."""
        return encode(self.teacher.encoders, batch, batch.present & ~keep)

    def loss_terms(self, batch: Batch, generator: torch.Generator) -> dict[str, Tensor]:
        """One MMIN step on a complete batch: draw an incomplete pattern per row, imagine, score (Sec. 3.3)."""
        c = self.config
        pick = torch.randint(len(self.patterns), (len(batch),), generator=generator, device=generator.device)
        keep = self.patterns[pick.to(self.patterns.device)]  # [N, M]
        h, recon, latents = self.imagine(batch.drop(keep))
        out = self.head(latents)
        task = self.task_loss(out.squeeze(-1) if self.spec.task == "regression" else out, batch.y)
        imagination = F.mse_loss(recon, self.teacher_target(batch, keep))
        cycle = F.mse_loss(self.ae_cycle(recon)[0], h.detach())
        loss = c.task_weight * task + c.mse_weight * imagination + c.cycle_weight * cycle
        return {"loss": loss, "task": task, "imagination": imagination, "cycle": cycle}

    def training_loss(self, batch: Batch, generator: torch.Generator) -> Tensor:
        return self.loss_terms(batch, generator)["loss"]

    def train_step(self, batch: Batch, generator: torch.Generator) -> StepOut:
        terms = self.loss_terms(batch, generator)
        return StepOut(terms.pop("loss"), terms)

    def teacher_budget(self) -> Budget:
        t = self.config.teacher
        return replace(self.config.budget(), epochs=int(t["epochs"]), grad_clip=float(t["grad_clip"]),
                       beta1=float(t["beta1"]))

    def planned_epochs(self) -> int:
        return self.teacher_budget().epochs + self.config.epochs

    def stages(self, data: Dataset, ctx: FitContext) -> Iterator[Stage]:
        """Stage 1, the teacher on complete data (selected on complete validation data), then freeze it and start
        MMIN's encoders from it; stage 2, MMIN on incomplete patterns under the run's selection policy."""
        teacher = self.teacher.requires_grad_(True)
        yield Stage("teacher", teacher, teacher.train_step, self.teacher_budget(), ctx.scorer(data, "complete"),
                    clip_groups=teacher.clip_groups())
        teacher.requires_grad_(False).eval()
        self.encoders.load_state_dict(teacher.encoders.state_dict())
        groups: list[nn.Module] = [*self.encoders.values(), self.ae, self.ae_cycle, self.head]
        yield Stage("mmin", self, self.train_step, self.config.budget(), ctx.scorer(data), clip_groups=groups)
