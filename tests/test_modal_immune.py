"""ModalImmune as a whole: Algorithm 1 runs every component, records its diagnostics, and the ablations exist."""

from __future__ import annotations

import math

import pytest
import torch

from baselines.modal_immune import ModalImmuneConfig
from baselines.modal_immune.train import random_keep
from harness.config import method_config
from harness.data import Dataset
from harness.registry import METHODS
from harness.seeding import seed_everything, torch_generator
from harness.training import FitContext

ABLATIONS = ["no_collapse", "uniform_bandit", "no_curvature_gate", "fixed_meta", "no_property", "no_sdl"]


def fit(name: str, data: Dataset, **options):
    seed_everything(0)
    cfg = method_config(name, {"*": {"epochs": 3, "batch_size": 32, "p_sdl": 0.5, **options}})
    model = METHODS.get(name)(data.spec, cfg)
    result = model.fit(data, FitContext(torch.device("cpu"), torch_generator(0), seed=0))
    return model, result


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
    assert {"sdl", "rec", "curvature", "bandit", "meta"} <= set(d["seconds"])
    assert model.diagnostics() is d


def test_fixed_meta_keeps_xi_and_no_gate_skips_curvature(tiny_mosi: Dataset) -> None:
    _, fixed = fit("modal_immune-fixed_meta", tiny_mosi)
    assert not fixed.extra["meta_updates"]
    assert all(x == pytest.approx({"lambda": 0.5, "eta": 0.1, "kappa": 0.5}) for x in fixed.extra["xi_per_epoch"])
    _, nogate = fit("modal_immune-no_curvature_gate", tiny_mosi)
    assert not nogate.extra["gate_fractions"] and "curvature" not in nogate.extra["seconds"]


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
    ("embed", 60, "multiple of fusion_heads"),
    ("bandit", "ucb", "'exp3p' or 'uniform'"),
    ("stable_rank_sign", 0, "1 or -1"),
])
def test_config_errors_name_the_field(field: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModalImmuneConfig(**{field: value})


def test_single_modality_dataset_is_refused(tiny_mosi: Dataset) -> None:
    from dataclasses import replace

    spec = replace(tiny_mosi.spec, modalities=("text",), dims=(16,), seq_lens=(8,))
    with pytest.raises(ValueError, match="needs at least two modalities"):
        METHODS.get("modal_immune")(spec, ModalImmuneConfig())
