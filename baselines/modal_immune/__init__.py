"""ModalImmune (Fu et al., "ModalImmune: ...", arXiv 2602.16197, 2026): the reference implementation.

Self-destructive learning: training alternates reconstruction batches (random modality masking, generator
synthesis, L_rec of Eq. 4–5) with SDL batches (probability ``p_sdl``) in which one modality m*, chosen by an
EXP3.P bandit on an information-gain surrogate (Eq. 16), is omitted from fusion and its embeddings are
collapsed towards scale-matched Gaussian noise with a stable-rank penalty (Eq. 9–12); the attacked encoder's
gradients are curvature-gated (Eq. 13–14, App. A.3) and the meta-parameters ξ = {λ, η, κ} follow a certified
Neumann hyper-gradient on validation batches (Eq. 15, App. A.4). Every choice the paper leaves open is a config
field below with its reason; ``shared/reference/modalimmune.md`` (gap list) has the full discussion.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from baselines.base import Method, MethodCard, MethodConfig, Reported
from baselines.modal_immune.model import ModalImmuneNet
from harness.data import Batch, Dataset, DatasetSpec
from harness.registry import METHODS
from harness.training import FitContext, FitResult


@dataclass(frozen=True)
class ModalImmuneConfig(MethodConfig):
    """Defaults follow the paper (§4.2, Table 7, App. B/C) where it is explicit.

    Architecture — ``embed`` d: embedding size (not given; 64 keeps CPU runs fast, divisible by 8 heads);
    ``property_dim`` d_p = 128 (§4.2); ``fusion_heads`` = 8 (Table 7); ``fusion_layers``: attention layers.
    Losses — ``alpha_re``, ``beta_pe``, ``gamma_con``: weights of L_re, L_pe, L_con (not given; 0.1 each);
    ``con_temperature``: InfoNCE temperature (not given; 0.1); ``rec_mask_p``: per-modality masking
    probability in reconstruction batches (not given; 0.3, at least one modality kept).
    SDL — ``p_sdl`` = 0.2 (Table 7); ξ initial values ``lambda_coll`` 0.5, ``eta_rank`` 0.1, ``kappa`` 0.5
    (Table 7/8); ``stable_rank_sign``: −1, the text's reading (§3.2, Fig. 6: collapse *flattens* the spectrum),
    not the + that Eq. (12) prints (gap #17). Measured (tests/test_modal_immune_components.py): minimising the
    collapse loss with +η keeps a label-carrying encoder rank-1 and the label decodable (stable rank 1.1, R² 0.85);
    with −η the embeddings become near-isotropic and the label undecodable (stable rank 4.4, R² 0.25).
    Bandit — ``bandit`` "exp3p" or "uniform"; ``bandit_gamma`` 0.05 (App. C); ``bandit_eta_mode`` "paper"
    (η = min(0.5, ln K/(K T))) or "sqrt" (√(ln K/(K T)), the usual EXP3 rate).
    Curvature gate — ``curvature_iters``: Hessian-vector products per query, ≤ 10 (§4.13), shared by the λ_max
    and λ_min power iterations; ``curvature_batch``: samples of the SDL batch the curvature is estimated on
    (sub-sampling as §3.13 recommends; 16); ``curvature_source`` "hessian"
    (default: an empirical Fisher is PSD, so the gate's λ_min < −τ could never fire, gap #2) or "fisher";
    ``gate_mode`` "paper" (ρ = 0 freezes the attacked encoder as §3.8 says, ρ = −κ applies g̃ = (I + ρM)g of
    A.3) or "a3" (A.3 in both branches, so ρ = 0 leaves g unchanged); ``gate_mask_prob`` q of M = diag(Bern(q))
    (not given; 0.1).
    Meta-learning (BHGD) — ``meta_every`` epochs between updates ("periodically"; once per epoch);
    ``meta_lr``: sign-gradient step on ξ (not given); ``inner_lr`` α = 5e-3 (App. B); ``neumann_tol`` 0.02
    and ``neumann_kmax`` 10 (App. C, Fig. 5); ``meta_batch``: validation samples per update;
    ``hypergrad_form`` "paper" (Eq. 15 as printed: Σ(αH)^k v, certified by αβ < 1; for small α a
    curvature-corrected one-step greedy hyper-gradient) or "ift" (α Σ(I − αH)^k v = H⁻¹v, the exact implicit
    hyper-gradient when it converges; with an indefinite H it never certifies and always uses K = 10).
    Inference — ``missing_fill`` "generator" (G_m synthesises a missing modality, §3.5) or "mask_token"
    (§4.1's learnable mask token).
    Switches for ablations — ``use_collapse``, ``use_generator``, ``use_property``, ``use_back_translation``,
    ``curvature_gate``, ``meta_learning``.
    Training — batch 32 (§4.13), cosine-annealed learning rate (App. C), ``property_lr`` 1e-3 (§4.2), MSE task
    loss for regression (§3.6), epochs and patience as every other method here so budgets are equal.
    """

    batch_size: int = 32
    regression_loss: str = "mse"
    embed: int = 64
    property_dim: int = 128
    fusion_heads: int = 8
    fusion_layers: int = 1
    alpha_re: float = 0.1
    beta_pe: float = 0.1
    gamma_con: float = 0.1
    con_temperature: float = 0.1
    rec_mask_p: float = 0.3
    p_sdl: float = 0.2
    lambda_coll: float = 0.5
    eta_rank: float = 0.1
    kappa: float = 0.5
    stable_rank_sign: int = -1
    bandit: str = "exp3p"
    bandit_gamma: float = 0.05
    bandit_eta_mode: str = "paper"
    curvature_iters: int = 10
    curvature_batch: int = 16
    curvature_source: str = "hessian"
    gate_mode: str = "paper"
    gate_mask_prob: float = 0.1
    meta_every: int = 1
    meta_lr: float = 0.02
    inner_lr: float = 5e-3
    neumann_tol: float = 0.02
    neumann_kmax: int = 10
    hypergrad_form: str = "paper"
    meta_batch: int = 64
    property_lr: float = 1e-3
    missing_fill: str = "generator"
    use_collapse: bool = True
    use_generator: bool = True
    use_property: bool = True
    use_back_translation: bool = True
    curvature_gate: bool = True
    meta_learning: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        unit = "in [0, 1)"
        self.check("embed", self.embed >= self.fusion_heads and self.embed % self.fusion_heads == 0,
                   f"a positive multiple of fusion_heads ({self.fusion_heads})")
        for name in ("property_dim", "fusion_heads", "fusion_layers", "curvature_iters", "curvature_batch",
                     "neumann_kmax", "meta_every", "meta_batch"):
            self.check(name, getattr(self, name) >= 1, ">= 1")
        for name in ("alpha_re", "beta_pe", "gamma_con", "lambda_coll", "eta_rank", "kappa", "meta_lr"):
            self.check(name, getattr(self, name) >= 0, ">= 0")
        for name in ("rec_mask_p", "p_sdl", "gate_mask_prob", "bandit_gamma", "neumann_tol"):
            self.check(name, 0 <= getattr(self, name) < 1, unit)
        self.check("con_temperature", self.con_temperature > 0, "> 0")
        self.check("inner_lr", self.inner_lr > 0, "> 0")
        self.check("property_lr", self.property_lr > 0, "> 0")
        self.check("stable_rank_sign", self.stable_rank_sign in (1, -1), "1 or -1")
        self.check("bandit", self.bandit in ("exp3p", "uniform"), "'exp3p' or 'uniform'")
        self.check("bandit_eta_mode", self.bandit_eta_mode in ("paper", "sqrt"), "'paper' or 'sqrt'")
        self.check("curvature_source", self.curvature_source in ("hessian", "fisher"), "'hessian' or 'fisher'")
        self.check("gate_mode", self.gate_mode in ("paper", "a3"), "'paper' or 'a3'")
        self.check("hypergrad_form", self.hypergrad_form in ("paper", "ift"), "'paper' or 'ift'")
        self.check("missing_fill", self.missing_fill in ("generator", "mask_token"), "'generator' or 'mask_token'")
        self.check("missing_fill", self.use_generator or self.missing_fill == "mask_token",
                   "'mask_token' when use_generator is false")
        self.check("use_back_translation", self.use_generator or not self.use_back_translation,
                   "false when use_generator is false")


PAPER = "Fu et al., ModalImmune, arXiv 2602.16197 (2026)"
CLAIM = "the paper's claim (Table {}); several of its numbers look implausible, e.g. text+audio above full"
MOSI_FIX = {"text": (0.912, 0.912, 0.512), "vision": (0.697, 0.697, 0.257), "audio": (0.702, 0.702, 0.262),
            "text+vision": (0.922, 0.922, 0.527), "text+audio": (0.927, 0.927, 0.532),
            "audio+vision": (0.717, 0.717, 0.272)}


def _reported() -> tuple[Reported, ...]:
    rows = [Reported("mosi", m, v, source=CLAIM.format(1)) for m, v in
            (("acc7", 0.531), ("acc2_non0", 0.921), ("f1_non0", 0.921), ("mae", 0.590), ("corr", 0.895))]
    rows += [Reported("mosei", m, v, source=CLAIM.format(1)) for m, v in
             (("acc7", 0.590), ("acc2_non0", 0.917), ("f1_non0", 0.917), ("mae", 0.448), ("corr", 0.859))]
    rows += [Reported("iemocap", "wa", 0.857, source=CLAIM.format(2)), Reported("iemocap", "ua", 0.857,
                                                                                  source=CLAIM.format(2))]
    for cond, (acc2, f1, acc7) in MOSI_FIX.items():
        rows += [Reported("mosi", "acc2_non0", acc2, cond, source=CLAIM.format(3)),
                 Reported("mosi", "f1_non0", f1, cond, source=CLAIM.format(3)),
                 Reported("mosi", "acc7", acc7, cond, source=CLAIM.format(3))]
    return tuple(rows)


class ModalImmune(Method):
    """Self-destructive learning with collapse, bandit, curvature gate and certified hyper-gradient."""

    Config = ModalImmuneConfig
    card = MethodCard(
        paper=PAPER,
        url="https://arxiv.org/abs/2602.16197",
        code="none published; this is the reference implementation",
        reported=_reported(),
        notes="Acc2/F1 convention not stated in the paper; mapped to acc2_non0/f1_non0 (MMSA's default).",
    )

    def __init__(self, spec: DatasetSpec, config: ModalImmuneConfig) -> None:
        super().__init__(spec, config)
        if len(spec.modalities) < 2:
            raise ValueError(f"modal_immune needs at least two modalities; {spec.name} has {spec.modalities}")
        self.net = ModalImmuneNet(spec, config)
        self._diagnostics: dict[str, Any] = {}

    def forward(self, batch: Batch) -> Tensor:
        return self.net(batch)

    def training_loss(self, batch: Batch, generator) -> Tensor:
        """The expected per-batch objective of Eq. (8): (1 − p_sdl)·L_rec + p_sdl·L_SDL(m*), m* drawn uniformly
        from ``generator``, at the initial ξ. ``fit`` runs Algorithm 1 itself, one kind of batch at a time."""
        from baselines.modal_immune.meta import MetaState
        from baselines.modal_immune.train import reconstruction_loss, sdl_loss

        loss = reconstruction_loss(self, batch, generator)[0]
        p = self.config.p_sdl
        if p == 0:
            return loss
        target = int(torch.randint(len(self.spec.modalities), (1,), generator=generator, device=generator.device))
        xi = MetaState.initial(self.config, batch.device).values()
        return (1 - p) * loss + p * sdl_loss(self, batch, target, xi, generator)[0]

    def fit(self, data: Dataset, ctx: FitContext) -> FitResult:
        from baselines.modal_immune.train import fit_modal_immune

        result = fit_modal_immune(self, data, ctx)
        self._diagnostics = result.extra
        return result

    def diagnostics(self) -> dict[str, Any]:
        return self._diagnostics


def variant(name: str, doc: str, **defaults: Any) -> type[ModalImmune]:
    """A registered ablation: ModalImmune with other config defaults (still overridable with --set)."""
    fields = ModalImmuneConfig.__dataclass_fields__
    cfg = dataclass(frozen=True)(type(f"{name}Config", (ModalImmuneConfig,), {
        "__annotations__": {k: fields[k].type for k in defaults}, "__doc__": doc, **defaults}))
    cls = type(name, (ModalImmune,), {"Config": cfg, "__doc__": doc})
    cls.card = dataclasses.replace(ModalImmune.card, reported=(), notes=f"Ablation: {doc}")
    return cls


METHODS.add("modal_immune", ModalImmune)
ABLATIONS = {
    "no_collapse": ("No collapse regularizer in SDL batches (m* still omitted).", {"use_collapse": False}),
    "uniform_bandit": ("m* drawn uniformly instead of by EXP3.P.", {"bandit": "uniform"}),
    "no_curvature_gate": ("No curvature-gated gradient masking.", {"curvature_gate": False}),
    "fixed_meta": ("ξ = {λ, η, κ} fixed at their initial values (no BHGD).", {"meta_learning": False}),
    "no_property": ("No property vectors (generator from available embeddings only, no L_pe).",
                    {"use_property": False}),
    "no_sdl": ("No SDL batches at all (reconstruction-driven training only).", {"p_sdl": 0.0}),
}
for _suffix, (_doc, _defaults) in ABLATIONS.items():
    METHODS.add(f"modal_immune-{_suffix}", variant(f"ModalImmune_{_suffix}", _doc, **_defaults), hidden=True)
