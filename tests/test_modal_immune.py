"""ModalImmune as a whole: Algorithm 1 runs every component, records its diagnostics, and the ablations exist."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from baselines.modal_immune import ModalImmuneConfig
from baselines.modal_immune.losses import random_keep, sdl_task_loss
from baselines.modal_immune.meta import MetaState, meta_step
from baselines.modal_immune.train import Trainer
from harness.config import method_config
from harness.data import Dataset
from harness.registry import METHODS
from harness.seeding import seed_everything, torch_generator
from harness.training import FitContext, train_stage

ABLATIONS = ["no_collapse", "uniform_bandit", "no_curvature_gate", "fixed_meta", "no_sdl", "wo_property",
             "wo_reconstruction", "wo_mirror", "wo_fusion", "wo_property_reconstruction", "wo_all"]
SECONDS = {"rec", "sdl", "collapse", "curvature_gate", "bandit", "bhgd", "probe"}
CPU = torch.device("cpu")


def build(name: str, data: Dataset, **options):
    seed_everything(0)
    cfg = method_config(name, {"*": {"epochs": 3, "batch_size": 32, "p_sdl": 0.5, **options}})
    return METHODS.get(name)(data.spec, cfg)


class Fitted:
    """A fit's result with ModalImmune's diagnostics as ``extra`` (what run.json stores as ``diagnostics``)."""

    def __init__(self, result, diagnostics: dict) -> None:
        self.result, self.extra = result, diagnostics

    def __getattr__(self, name: str):
        return getattr(self.result, name)


def fit(name: str, data: Dataset, **options):
    model = build(name, data, **options)
    result = model.fit(data, FitContext(CPU, torch_generator(0), seed=0))
    return model, Fitted(result, model.diagnostics())


def trainer(name: str, data: Dataset, **options) -> Trainer:
    """A trainer whose optimizer the loop has built (one epoch trained, so ``t.opt`` is the loop's)."""
    t = Trainer(build(name, data, **{"epochs": 1, **options}), data, FitContext(CPU, torch_generator(0), seed=0))
    train_stage(t.stage(), data.train, t.ctx)
    return t


def test_ablations_are_registered_hidden_and_selected_by_glob() -> None:
    names = METHODS.resolve(["modal_immune*"])
    assert names == sorted(["modal_immune", *(f"modal_immune-{a}" for a in ABLATIONS)])
    assert "modal_immune-no_collapse" not in METHODS.resolve(["all"])
    cfg = METHODS.get("modal_immune-fixed_meta").Config()
    assert cfg.meta_learning is False and cfg.use_collapse is True


def test_full_method_runs_every_component(tiny_mosi: Dataset) -> None:
    model, result = fit("modal_immune", tiny_mosi)
    d = result.extra
    assert sum(d["bandit_arm_counts"].values()) > 0, "SDL batches happened and the bandit chose arms"
    assert set(d["gate_fractions"]) <= {"frozen", "negative_feedback"} and d["gate_fractions"]
    assert math.isclose(sum(d["gate_fractions"].values()), 1.0)
    assert len(d["stable_rank_per_epoch"]) == result.epochs_run
    assert all(len(r) == 3 and all(v >= 1 - 1e-4 for v in r) for r in d["stable_rank_per_epoch"])
    assert len(d["meta_updates"]) == result.epochs_run
    for upd in d["meta_updates"]:
        assert upd["K"] in (1, 2, 4, 8, 10)
        assert 0.1 <= upd["xi"]["lambda"] <= 1 and 0.05 <= upd["xi"]["eta"] <= 0.2 and 0.1 <= upd["xi"]["kappa"] <= 1
    assert d["bhgd_inactive_reason"] is None
    assert d["gate_counts"] and sum(d["gate_counts"].values()) == len(d["curvature_lambda_min"])
    assert len(d["curvature_lambda_max"]) == len(d["curvature_lambda_min"])


def test_component_seconds_are_disjoint_and_within_the_training_time(tiny_mosi: Dataset) -> None:
    _, result = fit("modal_immune", tiny_mosi)
    seconds = result.extra["seconds"]
    assert set(seconds) == SECONDS
    assert all(v >= 0 for v in seconds.values())
    # disjoint blocks: their sum cannot exceed the wall time of the whole run (nested timers would double count)
    assert sum(seconds.values()) <= result.train_time_s


def test_fixed_meta_keeps_xi_and_no_gate_skips_curvature(tiny_mosi: Dataset) -> None:
    _, fixed = fit("modal_immune-fixed_meta", tiny_mosi)
    assert not fixed.extra["meta_updates"]
    assert all(x == pytest.approx({"lambda": 0.5, "eta": 0.1, "kappa": 0.5}) for x in fixed.extra["xi_per_epoch"])
    assert "meta_learning is false" in fixed.extra["bhgd_inactive_reason"] and "bhgd" not in fixed.extra["seconds"]
    _, nogate = fit("modal_immune-no_curvature_gate", tiny_mosi)
    assert not nogate.extra["gate_fractions"] and "curvature_gate" not in nogate.extra["seconds"]
    assert nogate.extra["meta_updates"] and "collapse" in nogate.extra["seconds"]


def test_no_collapse_skips_bhgd_and_the_gate_and_says_so(tiny_mosi: Dataset) -> None:
    model, result = fit("modal_immune-no_collapse", tiny_mosi)
    d = result.extra
    assert not d["meta_updates"] and "use_collapse is false" in d["bhgd_inactive_reason"]
    assert all(x == pytest.approx({"lambda": 0.5, "eta": 0.1, "kappa": 0.5}) for x in d["xi_per_epoch"])
    assert not d["gate_fractions"] and not d["curvature_lambda_min"]
    assert not {"bhgd", "collapse", "curvature_gate"} & set(d["seconds"])
    assert "curvature gate" in METHODS.get("modal_immune-no_collapse").card.notes
    with pytest.raises(ValueError, match="use_collapse is false"):
        meta_step(model, tiny_mosi, MetaState.initial(model.config, CPU), FitContext(CPU, torch_generator(0), seed=0),
                  np.random.default_rng(0), None)


@pytest.mark.parametrize(("optimizer", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_the_optimizer_option_is_honoured(tiny_mosi: Dataset, optimizer: str, cls: type) -> None:
    opt = trainer("modal_immune", tiny_mosi, optimizer=optimizer, weight_decay=0.01).opt
    assert type(opt) is cls  # exact type: AdamW subclasses Adam
    assert all(g["weight_decay"] == 0.01 for g in opt.param_groups)


def test_only_the_property_vectors_get_the_property_lr(tiny_mosi: Dataset) -> None:
    t = trainer("modal_immune", tiny_mosi, lr=2e-3, property_lr=5e-4)
    net, groups = t.model.net, t.opt.param_groups
    assert len(groups) == 2 and groups[0]["lr"] == 2e-3 and groups[1]["lr"] == 5e-4
    assert len(groups[1]["params"]) == 1 and groups[1]["params"][0] is net.property
    rest = {id(p) for p in groups[0]["params"]}
    assert all(id(p) in rest for p in net.property_proj.parameters())  # W of L_pe is an ordinary layer
    assert len(rest) + 1 == len(list(t.model.parameters()))
    assert len(trainer("modal_immune-wo_property", tiny_mosi).opt.param_groups) == 1


def test_bandit_delta_and_reward_momentum_reach_the_bandit(tiny_mosi: Dataset) -> None:
    t = trainer("modal_immune", tiny_mosi, bandit_delta=0.2, bandit_reward_momentum=0.5)
    horizon = round(0.5 * 1 * math.ceil(len(tiny_mosi.train) / 32))
    assert t.bandit.beta == pytest.approx(math.sqrt(math.log(3 / 0.2) / (3 * horizon)))
    assert t.normalizer.momentum == 0.5


@pytest.mark.parametrize("fill", ["mask_token", "generator"])
def test_sdl_fill_chooses_what_takes_the_target_slot(tiny_mosi: Dataset, fill: str) -> None:
    model = build("modal_immune", tiny_mosi, sdl_fill=fill)
    assert hasattr(model.net, "mask_token") == (fill == "mask_token")  # built only when something uses it
    model.train()
    loss, _ = sdl_task_loss(model, tiny_mosi.train, target=1)
    loss.backward()
    gen_grads = [p.grad for p in model.net.generators.parameters()]
    assert all(g is not None for g in gen_grads) == (fill == "generator")
    model.zero_grad()
    model.training_loss(tiny_mosi.train, torch_generator(0)).backward()  # the contract: every parameter is trained
    assert all(p.grad is not None for p in model.parameters())


def test_classification_and_missing_fill_options(tiny_iemocap: Dataset) -> None:
    model, result = fit("modal_immune", tiny_iemocap, missing_fill="mask_token")
    assert result.select_metric == "ua"
    out = model.predict(tiny_iemocap.test.drop(torch.tensor([False, True, False])))
    assert out.shape == (len(tiny_iemocap.test), 4) and torch.isfinite(out).all()


def test_random_keep_keeps_at_least_one_available_modality() -> None:
    present = torch.ones(2000, 3, dtype=torch.bool)
    present[:500, 0] = False
    keep = random_keep(present, 0.6, torch_generator(0))
    assert keep.any(1).all() and not (keep & ~present).any()
    rate = 1 - keep[500:].float().mean().item()
    assert 0.45 < rate < 0.6, rate  # 0.6 masking, minus the rescued rows


@pytest.mark.parametrize(("field", "value", "message"), [
    ("p_sdl", 1.0, "p_sdl = 1.0 is invalid; valid: in \\[0, 1\\)"),
    ("embed", 60, "embed = 60 is invalid; valid: a positive multiple of fusion_heads"),
    ("bandit", "ucb", "bandit = 'ucb' is invalid; valid: 'exp3p' or 'uniform'"),
    ("stable_rank_sign", 0, "stable_rank_sign = 0 is invalid; valid: 1 or -1"),
    ("bandit_gamma", 0.0, "bandit_gamma = 0.0 is invalid; valid: in \\(0, 1\\]"),
    ("bandit_gamma", 1.5, "bandit_gamma = 1.5 is invalid; valid: in \\(0, 1\\]"),
    ("neumann_tol", 0.0, "neumann_tol = 0.0 is invalid; valid: in \\(0, 1\\)"),
    ("neumann_tol", 1.0, "neumann_tol = 1.0 is invalid; valid: in \\(0, 1\\)"),
    ("curvature_iters", 11, "curvature_iters = 11 is invalid; valid: in \\[1, 10\\]"),
    ("curvature_iters", 0, "curvature_iters = 0 is invalid; valid: in \\[1, 10\\]"),
    ("neumann_kmax", 11, "neumann_kmax = 11 is invalid; valid: in \\[1, 10\\]"),
    ("bandit_delta", 0.0, "bandit_delta = 0.0 is invalid; valid: in \\(0, 1\\)"),
    ("bandit_reward_momentum", 1.0, "bandit_reward_momentum = 1.0 is invalid; valid: in \\[0, 1\\)"),
    ("sdl_fill", "zeros", "sdl_fill = 'zeros' is invalid; valid: 'mask_token' or 'generator'"),
])
def test_config_errors_name_the_field(field: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModalImmuneConfig(**{field: value})


def test_config_boundaries_and_cross_field_checks() -> None:
    ModalImmuneConfig(bandit_gamma=1.0, curvature_iters=10, neumann_kmax=10, neumann_tol=0.5, bandit_delta=0.5)
    no_gen = {"use_generator": False, "use_back_translation": False, "missing_fill": "mask_token"}
    ModalImmuneConfig(**no_gen)
    with pytest.raises(ValueError, match="sdl_fill = 'generator' is invalid; valid: 'mask_token' when use_generator"):
        ModalImmuneConfig(sdl_fill="generator", **no_gen)


def test_single_modality_dataset_is_refused(tiny_mosi: Dataset) -> None:
    from dataclasses import replace

    spec = replace(tiny_mosi.spec, modalities=("text",), dims=(16,), seq_lens=(8,))
    with pytest.raises(ValueError, match="needs at least two modalities"):
        METHODS.get("modal_immune")(spec, ModalImmuneConfig())


def double_batch(batch):
    from dataclasses import replace

    return replace(batch, x={m: v.double() for m, v in batch.x.items()},
                   y=batch.y.double() if batch.y.is_floating_point() else batch.y)


@pytest.mark.parametrize("kappa", [0.2, 0.7])
def test_kappa_hypergradient_matches_finite_differences_through_one_gated_step(tiny_mosi: Dataset,
                                                                                  kappa: float) -> None:
    """dL_val/dκ is the derivative through the step κ actually scales: θ' = θ − lr (I − κM) ∇θ λ·L_coll(m*) on the
    attacked encoder (m* is omitted from fusion in an SDL batch, so that is its whole gradient). Central finite
    differences of L_val(θ'(κ)) in float64 agree with the analytic value."""
    from torch.func import functional_call

    from baselines.modal_immune.losses import per_sample_task_loss
    from baselines.modal_immune.meta import GatedStep

    model = build("modal_immune", tiny_mosi, gate_mask_prob=0.3).double().eval()
    train, val = double_batch(tiny_mosi.train), double_batch(tiny_mosi.valid)
    keep = random_keep(val.present, 0.3, torch_generator(4))

    def val_loss(params):
        out = functional_call(model, params, (val.drop(keep),), strict=False)
        return per_sample_task_loss(model, out, val.y).mean()

    xi = MetaState.initial(model.config, CPU)
    xi.lam, xi.eta = xi.lam.double(), xi.eta.double()
    step = GatedStep.build(model, train, 1, xi, val_loss, lr=0.5, generator=torch_generator(6))
    masked = float(torch.cat([m.flatten() for m in step.mask]).mean())
    assert any(bool((g != 0).any()) for g in step.g) and 0.1 < masked < 0.5
    h = 1e-4
    fd = (step.loss_after(kappa + h) - step.loss_after(kappa - h)) / (2 * h)
    analytic = step.hypergradient(kappa)
    assert analytic == pytest.approx(fd, rel=1e-4, abs=1e-10)
    assert abs(analytic) > 1e-8, "the test must see a non-trivial derivative"


def test_gate_branch_counts_are_in_the_diagnostics_and_both_branches_can_fire(tiny_mosi: Dataset) -> None:
    """Relative threshold (default): both branches fire on synth-mosi; with the paper's τ = 0.01/lr = 10 the
    measured λ_min never crosses it, so only one branch does."""
    _, rel = fit("modal_immune", tiny_mosi, epochs=4)
    counts = rel.extra["gate_counts"]
    assert sum(counts.values()) == len(rel.extra["curvature_lambda_min"]) > 0
    lam_min, lam_max = np.array(rel.extra["curvature_lambda_min"]), np.array(rel.extra["curvature_lambda_max"])
    frozen = int((lam_min < -1.0 * np.abs(lam_max)).sum())
    assert counts.get("frozen", 0) == frozen and counts.get("negative_feedback", 0) == len(lam_min) - frozen
    assert set(counts) == {"frozen", "negative_feedback"}, counts  # both branches fire (seeded, deterministic)
    _, paper = fit("modal_immune", tiny_mosi, epochs=2, gate_threshold="paper")
    assert set(paper.extra["gate_counts"]) == {"negative_feedback"}
