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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from baselines.base import Method, MethodCard, MethodConfig, Reported
from baselines.modal_immune.model import ModalImmuneNet
from harness.data import Batch, Dataset, DatasetSpec
from harness.registry import METHODS
from harness.training import FitContext, Stage


@dataclass(frozen=True)
class ModalImmuneConfig(MethodConfig):
    """Defaults follow the paper (§4.2, Table 7, App. B/C) where it is explicit; "not given" marks a gap, with the
    reason for the value chosen.

    Architecture — ``embed`` d: embedding size (not given; 64 keeps CPU runs fast, divisible by 8 heads);
    ``property_dim`` d_p = 128 (§4.2); ``fusion_heads`` = 8 (Table 7); ``fusion_layers``: attention layers of the
    hub (not given; 1: the hub sees only M <= 3 modality tokens, and one layer already lets every pair interact).
    Losses — ``alpha_re``, ``beta_pe``, ``gamma_con``: weights of L_re, L_pe, L_con (not given; 0.1 each, gap #6);
    ``con_temperature``: InfoNCE temperature (not given; 0.1, a common value for L2-normalised embeddings, e.g. in
    SimCLR); ``rec_mask_p``: per-modality masking probability in reconstruction batches (not given; 0.3 masks about
    one modality in three, so most batches give L_re masked-but-observed targets while most fused inputs stay
    complete; at least one modality is always kept).
    SDL — ``p_sdl`` = 0.2 (Table 7); ξ initial values ``lambda_coll`` 0.5, ``eta_rank`` 0.1, ``kappa`` 0.5
    (Table 7/8); ``sdl_fill``: what takes m*'s fusion slot in an SDL batch, "mask_token" (default: the literal
    "omitted from fusion" of Eq. 6 and Alg. 1 line 8, gap #7) or "generator" (G_m's surrogate from the other
    modalities, as §3.5 does for missing ones); ``stable_rank_sign``: −1, the text's reading (§3.2, Fig. 6:
    collapse *flattens* the spectrum), not the + that Eq. (12) prints (gap #17). Measured
    (tests/test_modal_immune_components.py): minimising the collapse loss with +η keeps a label-carrying encoder
    rank-1 and the label decodable (stable rank 1.1, R² 0.85); with −η the embeddings become near-isotropic and the
    label undecodable (stable rank 4.4, R² 0.25).
    Bandit — ``bandit`` "exp3p" or "uniform"; ``bandit_gamma`` γ = 0.05 (App. C; EXP3.P needs 0 < γ <= 1);
    ``bandit_eta_mode`` "paper" (η = min(0.5, ln K/(K T)) as App. C states) or "sqrt" (√(ln K/(K T)), the usual EXP3
    rate); ``bandit_delta`` δ of EXP3.P's confidence bonus β = √(ln(K/δ)/(K T)) (not given; 0.05: the regret bound
    of Auer et al. 2002 then holds with probability 95 %); ``bandit_reward_momentum``: momentum of the running mean
    m in the reward ℓ/(ℓ + m) (not given, gap #5; 0.9 averages about the last ten SDL batches, so the reward follows
    the shrinking scale of ℓ in training).
    Scale — ``collapse_scale``: "normalized" (default: the pull term of L_coll is divided by the batch's detached
    mean squared embedding norm, so the collapse term is dimensionless and stays O(1) on raw-scale features) or
    "paper" (Eq. 12 as printed, which grows with the square of the embedding scale: 500–3700 on raw MOSI
    features). Curvature gate — ``gate_threshold``: "relative" (default: freeze when
    λ_min < −``gate_tau_rel``·|λ_max|, scale-free, so both branches fire; see ``curvature``) or "paper"
    (τ = 0.01/lr, Eq. 13, which λ_min never crossed at lr = 1e-3 on standardised features: an inert gate);
    ``gate_tau_rel`` 1.0 (not given: freeze when the most negative curvature outweighs the most positive one, a
    saddle-dominated direction; measured on synth-mosi, λ_min/|λ_max| had median −0.64 standardised and −1.18
    on raw-scale features, so both branches fire; docs/modal_immune.md has the branch fractions);
    ``curvature_warm_iters`` 4: after an arm's first estimate, Lanczos starts from the sum of that estimate's two
    Ritz vectors and takes 4 products instead of ``curvature_iters`` (0: always cold). Measured on synth-mosi
    (53 SDL steps, 2 seeds): its branch agreed with a fresh cold 10-product estimate at the same parameters in
    90.6 % of steps, while two fresh cold estimates agreed in 92.5 % (the estimator's own noise), for 2.5x fewer
    products; reusing an arm's last estimate for later steps agreed in only 76 %, so estimates are never reused.
    ``curvature_iters``: Hessian-vector products per query, 1–10 (§4.13 caps it at 10), both ends
    of the spectrum (Lanczos); ``curvature_batch``: samples of the SDL batch the curvature is estimated on
    (sub-sampling as §3.13 recommends; 16); ``curvature_source`` "hessian" (default: an empirical Fisher is PSD, so
    the gate's λ_min < −τ could never fire, gap #2) or "fisher"; ``gate_mode`` "paper" (ρ = 0 freezes the attacked
    encoder as §3.8 says, ρ = −κ applies g̃ = (I + ρM)g of A.3) or "a3" (A.3 in both branches, so ρ = 0 leaves g
    unchanged); ``gate_mask_prob`` q of M = diag(Bern(q)) (not given, gap #4; 0.1: the negative feedback touches a
    tenth of the coordinates, keeping E‖ρM‖ small as A.3's variance bound asks). With ``gate_threshold="paper"``
    τ = 0.01/lr uses the current encoder lr (lr = 1e-3 gives τ = 10).
    Meta-learning (BHGD) — ``meta_every`` epochs between updates ("periodically"; once per epoch); ``meta_lr``:
    sign-gradient step on ξ (not given; 0.02 crosses ξ's widest range, 0.1–1, in 45 updates, about one training
    budget at one update per epoch, so no single noisy hyper-gradient moves ξ far); ``inner_lr`` α = 5e-3 (App. B);
    ``neumann_tol`` 0.02 in (0, 1) and ``neumann_kmax`` 10, at most 10 (App. C, Fig. 5); ``meta_batch``: validation
    samples per update (not given; 64, mid-way in the 32–128 the reference suggests, and affordable for the HVPs on a
    CPU); ``hypergrad_form`` "paper" (Eq. 15 as printed: Σ(αH)^k v, certified by αβ < 1; for small α a
    curvature-corrected one-step greedy hyper-gradient) or "ift" (α Σ(I − αH)^k v = H⁻¹v, the exact implicit
    hyper-gradient when it converges; with an indefinite H it never certifies and always uses K = 10). BHGD only
    runs when ξ reaches a trained loss: not with ``use_collapse`` false (see ``meta.inactive_reason``).
    Inference — ``missing_fill`` "generator" (G_m synthesises a missing modality, §3.5) or "mask_token"
    (§4.1's learnable mask token).
    Switches for ablations — ``use_fusion`` (false replaces the attention hub by the mean of the M modality
    tokens: Table 5's "w/o fusion module"), ``use_collapse`` (false also turns off the curvature gate and BHGD:
    the gate reads the curvature of λ·L_coll, and ξ weights nothing else), ``use_generator``, ``use_property``,
    ``use_back_translation``, ``curvature_gate``, ``meta_learning``.
    Training — the run's shared backbone and budget (encoders, sizes, loss, batch, epochs, patience, optimizer,
    lr, schedule) like every other method; ``paper`` (``backbone="paper"``) gives the paper's: Bi-LSTM encoders,
    batch 32 (§4.13), cosine-annealed learning rate (App. C), MSE task loss for regression (§3.6).
    ``property_lr`` 1e-3 for the property vectors p_m only (§4.2), in both modes.

    Fixed choices, not fields (one reading is clearly intended, or the alternative would measure nothing new):
    σ_B = ρ_B/√d is detached (gap #8): it is the scale of the noise target, and a gradient through it would add a
    shrink-the-top-singular-value term Eq. (12) does not write. BHGD's m* is the bandit's most likely arm (a uniform
    draw with ``bandit="uniform"``): the hyper-gradient needs one m*, and that arm's collapse term dominates the
    expected L_SDL. ℓ_m* is observed after the SDL update, with two no-grad forward passes of the same batch
    (Alg. 1 line 11 follows the step of line 10). EXP3.P's weights start uniform (Alg. 1 line 1).
    """

    paper = {"seq_encoder": "bilstm", "batch_size": 32, "regression_loss": "mse", "lr_schedule": "cosine"}

    property_dim: int = 128
    fusion_heads: int = 8
    fusion_layers: int = 1
    alpha_re: float = 0.1
    beta_pe: float = 0.1
    gamma_con: float = 0.1
    con_temperature: float = 0.1
    rec_mask_p: float = 0.3
    p_sdl: float = 0.2
    sdl_fill: str = "mask_token"
    lambda_coll: float = 0.5
    eta_rank: float = 0.1
    kappa: float = 0.5
    stable_rank_sign: int = -1
    bandit: str = "exp3p"
    bandit_gamma: float = 0.05
    bandit_eta_mode: str = "paper"
    bandit_delta: float = 0.05
    bandit_reward_momentum: float = 0.9
    collapse_scale: str = "normalized"
    gate_threshold: str = "relative"
    gate_tau_rel: float = 1.0
    curvature_warm_iters: int = 4
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
    use_fusion: bool = True
    use_collapse: bool = True
    use_generator: bool = True
    use_property: bool = True
    use_back_translation: bool = True
    curvature_gate: bool = True
    meta_learning: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check("embed", self.embed >= self.fusion_heads and self.embed % self.fusion_heads == 0,
                   f"a positive multiple of fusion_heads ({self.fusion_heads})")
        for name in ("property_dim", "fusion_heads", "fusion_layers", "curvature_batch", "meta_every", "meta_batch"):
            self.check(name, getattr(self, name) >= 1, ">= 1")
        self.check("curvature_iters", 1 <= self.curvature_iters <= 10, "in [1, 10] (§4.13: at most 10 products)")
        self.check("curvature_warm_iters", 0 <= self.curvature_warm_iters <= 10, "in [0, 10] (0: no warm start)")
        self.check("neumann_kmax", 1 <= self.neumann_kmax <= 10, "in [1, 10] (App. C: K_max = 10)")
        for name in ("alpha_re", "beta_pe", "gamma_con", "lambda_coll", "eta_rank", "kappa", "meta_lr"):
            self.check(name, getattr(self, name) >= 0, ">= 0")
        for name in ("rec_mask_p", "p_sdl", "gate_mask_prob", "bandit_reward_momentum"):
            self.check(name, 0 <= getattr(self, name) < 1, "in [0, 1)")
        self.check("bandit_gamma", 0 < self.bandit_gamma <= 1, "in (0, 1] (EXP3.P's exploration rate)")
        self.check("bandit_delta", 0 < self.bandit_delta < 1, "in (0, 1) (EXP3.P's confidence level)")
        self.check("neumann_tol", 0 < self.neumann_tol < 1, "in (0, 1) (a tail-to-‖v‖ ratio)")
        self.check("con_temperature", self.con_temperature > 0, "> 0")
        self.check("inner_lr", self.inner_lr > 0, "> 0")
        self.check("property_lr", self.property_lr > 0, "> 0")
        self.check("stable_rank_sign", self.stable_rank_sign in (1, -1), "1 or -1")
        self.check("bandit", self.bandit in ("exp3p", "uniform"), "'exp3p' or 'uniform'")
        self.check("bandit_eta_mode", self.bandit_eta_mode in ("paper", "sqrt"), "'paper' or 'sqrt'")
        self.check("collapse_scale", self.collapse_scale in ("normalized", "paper"), "'normalized' or 'paper'")
        self.check("gate_threshold", self.gate_threshold in ("relative", "paper"), "'relative' or 'paper'")
        self.check("gate_tau_rel", self.gate_tau_rel >= 0, ">= 0")
        self.check("curvature_source", self.curvature_source in ("hessian", "fisher"), "'hessian' or 'fisher'")
        self.check("gate_mode", self.gate_mode in ("paper", "a3"), "'paper' or 'a3'")
        self.check("hypergrad_form", self.hypergrad_form in ("paper", "ift"), "'paper' or 'ift'")
        self.check("missing_fill", self.missing_fill in ("generator", "mask_token"), "'generator' or 'mask_token'")
        self.check("missing_fill", self.use_generator or self.missing_fill == "mask_token",
                   "'mask_token' when use_generator is false")
        self.check("sdl_fill", self.sdl_fill in ("mask_token", "generator"), "'mask_token' or 'generator'")
        self.check("sdl_fill", self.use_generator or self.sdl_fill == "mask_token",
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
        label="ModalImmune",
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

    def forward(self, batch: Batch) -> Tensor:
        return self.net(batch)

    def training_loss(self, batch: Batch, generator: torch.Generator) -> Tensor:
        """The expected per-batch objective of Eq. (8): (1 − p_sdl)·L_rec + p_sdl·L_SDL(m*), m* drawn uniformly
        from ``generator``, at the initial ξ. ``fit`` runs Algorithm 1 itself, one kind of batch at a time."""
        from baselines.modal_immune.losses import reconstruction_loss, sdl_loss
        from baselines.modal_immune.meta import MetaState

        loss = reconstruction_loss(self, batch, generator)[0]
        p = self.config.p_sdl
        if p == 0:
            return loss
        target = int(torch.randint(len(self.spec.modalities), (1,), generator=generator, device=generator.device))
        xi = MetaState.initial(self.config, batch.device).values()
        return (1 - p) * loss + p * sdl_loss(self, batch, target, xi, generator)[0]

    def stages(self, data: Dataset, ctx: FitContext) -> Iterator[Stage]:
        """Algorithm 1 as one stage of the loop; the trainer's hooks supply its steps and BHGD."""
        from baselines.modal_immune.train import Trainer

        self._trainer = Trainer(self, data, ctx)
        yield self._trainer.stage()

    def diagnostics(self) -> dict[str, Any]:
        trainer = getattr(self, "_trainer", None)
        return trainer.summary() if trainer is not None else {}


def variant(name: str, doc: str, **defaults: Any) -> type[ModalImmune]:
    """A registered ablation: ModalImmune with other config defaults (still overridable with --set)."""
    fields = ModalImmuneConfig.__dataclass_fields__
    cfg = dataclass(frozen=True)(type(f"{name}Config", (ModalImmuneConfig,), {
        "__annotations__": {k: fields[k].type for k in defaults}, "__doc__": doc, **defaults}))
    cls = type(name, (ModalImmune,), {"Config": cfg, "__doc__": doc})
    cls.card = dataclasses.replace(ModalImmune.card, reported=(), notes=f"Ablation: {doc}", label="")  # registry name
    return cls


METHODS.add("modal_immune", ModalImmune)
ABLATIONS = {
    "no_collapse": ("No collapse regularizer in SDL batches (m* still omitted). This also turns off the curvature "
                    "gate (it gates on the curvature of λ·L_coll) and BHGD (ξ then weights no trained loss).",
                    {"use_collapse": False}),
    "uniform_bandit": ("m* drawn uniformly instead of by EXP3.P.", {"bandit": "uniform"}),
    "no_curvature_gate": ("No curvature-gated gradient masking.", {"curvature_gate": False}),
    "fixed_meta": ("ξ = {λ, η, κ} fixed at their initial values (no BHGD).", {"meta_learning": False}),
    "no_sdl": ("No SDL batches at all (reconstruction-driven training only).", {"p_sdl": 0.0}),
    # The paper's Table 5 (module ablations on CMU-MOSI), under the paper's names:
    "wo_property": ("Table 5 'w/o property embedding pathway': no property vectors p_m (the generator reads the "
                    "available embeddings only, no L_pe).", {"use_property": False}),
    "wo_reconstruction": ("Table 5 'w/o reconstruction module': no generators G_m and no L_re; missing and SDL "
                          "slots get the learnable mask token (so no property pathway and no back-translation "
                          "either: both live inside the generator).",
                          {"use_generator": False, "use_back_translation": False, "missing_fill": "mask_token",
                           "sdl_fill": "mask_token"}),
    "wo_mirror": ("Table 5 'w/o mirror involution', read as the back-translation networks B_m and their cycle "
                  "term in L_re (the paper never defines it; gap #6).", {"use_back_translation": False}),
    "wo_fusion": ("Table 5 'w/o fusion module': the attention hub is replaced by the mean of the modality tokens.",
                  {"use_fusion": False}),
    "wo_property_reconstruction": ("Table 5 'w/o property pathway + reconstruction': no property vectors, no "
                                   "generators, no L_re, no back-translation; mask tokens fill missing slots.",
                                   {"use_property": False, "use_generator": False, "use_back_translation": False,
                                    "missing_fill": "mask_token", "sdl_fill": "mask_token"}),
    "wo_all": ("Table 5 'w/o all modules': no property pathway, reconstruction module, mirror involution or fusion "
               "hub (mask tokens, mean of tokens); SDL, the bandit, the gate and BHGD stay.",
               {"use_property": False, "use_generator": False, "use_back_translation": False,
                "missing_fill": "mask_token", "sdl_fill": "mask_token", "use_fusion": False}),
}
# Table 5 of the paper (CMU-MOSI, mean of 3 runs; FIX = mean over Table 3's fixed patterns, MR = mean over Table 4's
# missing rates), Acc2 / F1 / Acc7 in %, as reported; transcribed in shared/reference/modalimmune.md §4.7.
TABLE5 = {"wo_property": ((77.7, 77.5, 34.2), (80.4, 80.2, 38.0)),
          "wo_reconstruction": ((78.9, 78.7, 35.0), (81.6, 81.5, 40.3)),
          "wo_mirror": ((79.2, 79.0, 35.3), (81.8, 81.7, 40.5)),
          "wo_fusion": ((80.3, 80.2, 36.5), (82.7, 82.6, 41.6)),
          "wo_property_reconstruction": ((76.6, 76.4, 33.4), (79.3, 79.1, 37.3)),
          "wo_all": ((74.8, 74.6, 31.7), (77.5, 77.3, 34.2)),
          "full": ((81.5, 81.5, 39.7), (82.6, 82.6, 41.3))}
for _suffix, (_doc, _defaults) in ABLATIONS.items():
    METHODS.add(f"modal_immune-{_suffix}", variant(f"ModalImmune_{_suffix}", _doc, **_defaults), hidden=True)
