"""Method-specific tests for the baselines (the shared contract is in test_method_contract.py).

modality_dropout: drops at the configured rate in training (measured over many batches), never at evaluation.
mmin: the imagination loss falls, the imagined embedding of a missing modality beats the mean embedding, the
teacher stage leaves a frozen teacher whose encoders initialise MMIN. Bad configs fail before training.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from baselines.encoders import LSTMMaxPoolEncoder, TextCNNEncoder
from baselines.mmin.loop import incomplete_patterns, lr_factor
from baselines.mmin.model import MMIN, MMINConfig
from baselines.modality_dropout import ModalityDropout, ModalityDropoutConfig
from baselines.vanilla_fusion import VanillaFusion, VanillaFusionConfig
from harness.config import method_config
from harness.data import Dataset, DatasetSpec
from harness.seeding import seed_everything, torch_generator
from harness.training import FitContext


def ctx(seed: int = 0) -> FitContext:
    return FitContext(torch.device("cpu"), torch_generator(seed), seed)


def conditional_drop_rate(p: tuple[float, ...]) -> list[float]:
    """P(modality m dropped | at least one kept) for independent drops with probabilities ``p``."""
    all_dropped = math.prod(p)
    return [(pm - all_dropped) / (1 - all_dropped) for pm in p]


# ----------------------------------------------------------------------------------------------- modality_dropout


@pytest.mark.parametrize("p", [(0.3,), (0.1, 0.6, 0.3)])
def test_dropout_rate_matches_config_over_many_batches(p: tuple[float, ...], tiny_mosi: Dataset) -> None:
    model = ModalityDropout(tiny_mosi.spec, ModalityDropoutConfig(p=p))
    gen, kept = torch_generator(0), []
    for _ in range(300):
        kept.append(model.augment(tiny_mosi.train, gen).present)
    kept = torch.cat(kept)  # [300 * 96, 3]
    assert kept.any(-1).all(), "a sample must keep at least one modality"
    expected = conditional_drop_rate(p * 3 if len(p) == 1 else p)
    measured = (~kept).float().mean(0).tolist()
    assert measured == pytest.approx(expected, abs=0.01)  # std of each estimate is about 0.003


def test_dropout_applies_in_training_only(tiny_mosi: Dataset) -> None:
    model = ModalityDropout(tiny_mosi.spec, method_config("modality_dropout", {"*": {"epochs": 20, "batch_size": 32}}))
    seen: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    model.register_forward_pre_hook(lambda mod, args: seen[mod.training].append(args[0].present.clone()))
    model.fit(tiny_mosi, ctx())
    train = torch.cat(seen[True])
    assert (~train).float().mean(0).tolist() == pytest.approx(conditional_drop_rate((0.3,) * 3), abs=0.04)
    assert seen[False] and all(p.all() for p in seen[False]), "validation data must reach the model undropped"
    test = tiny_mosi.test.drop(torch.tensor([True, False, True]))
    seen[False].clear()
    model.predict(test)
    assert torch.equal(torch.cat(seen[False]), test.present), "evaluation must see exactly the given present mask"
    plain = VanillaFusion(tiny_mosi.spec, model.config)  # the same network, no dropout anywhere
    plain.load_state_dict(model.state_dict())
    for batch in (tiny_mosi.test, test):
        assert torch.equal(model.predict(batch), plain.predict(batch)), "evaluation must not drop anything"


def test_learned_token_replaces_missing_modalities(tiny_mosi: Dataset) -> None:
    model = ModalityDropout(tiny_mosi.spec, ModalityDropoutConfig(fill="token")).eval()
    batch = tiny_mosi.test.drop(torch.tensor([False, True, True]))  # text missing
    z = model.embed(batch).view(len(batch), 3, -1)
    assert torch.equal(z[:, 0], model.tokens[0].expand_as(z[:, 0]))
    assert not torch.equal(z[:, 1], model.tokens[1].expand_as(z[:, 1]))


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"p": (1.0,)}, "ModalityDropoutConfig.p"),
    ({"p": (0.3, -0.1, 0.2)}, "ModalityDropoutConfig.p"),
    ({"p": ()}, "ModalityDropoutConfig.p"),
    ({"fill": "noise"}, "ModalityDropoutConfig.fill"),
    ({"fill": "token", "fusion": "early"}, "ModalityDropoutConfig.fill"),
])
def test_bad_dropout_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ModalityDropoutConfig(**kwargs)


def test_bad_values_from_the_command_line_name_the_field() -> None:
    with pytest.raises(ValueError, match="ModalityDropoutConfig.p"):
        method_config("modality_dropout", {"modality_dropout": {"p": "0.3,1.5"}})
    with pytest.raises(ValueError, match="n_blocks"):
        method_config("mmin", {"mmin": {"n_blocks": "0"}})
    with pytest.raises(ValueError, match="vanilla_fusion.fusion"):
        method_config("vanilla_fusion", {"vanilla_fusion": {"fusion": "middle"}})


def test_per_modality_p_must_match_the_dataset(tiny_mosi: Dataset) -> None:
    with pytest.raises(ValueError, match="ModalityDropoutConfig.p has 2 values"):
        ModalityDropout(tiny_mosi.spec, ModalityDropoutConfig(p=(0.3, 0.3)))


# --------------------------------------------------------------------------------------- encoders, early fusion


@pytest.mark.parametrize("encoder", [LSTMMaxPoolEncoder(6, 8), TextCNNEncoder(6, 8, dropout=0.0)])
def test_pooling_encoders_ignore_padding(encoder: torch.nn.Module) -> None:
    x, lengths = torch.randn(5, 9, 6), torch.tensor([9, 6, 4, 2, 1])
    padded = x.clone()
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 0
        padded[i, n:] = 100.0  # garbage after each sample's length must not matter
    assert torch.allclose(encoder(x, lengths), encoder(padded, lengths), atol=1e-6)


def test_early_fusion_reads_only_present_modalities(tiny_mosi: Dataset) -> None:
    model = VanillaFusion(tiny_mosi.spec, VanillaFusionConfig(fusion="early")).eval()
    batch = tiny_mosi.test.drop(torch.tensor([True, False, False]))
    out = model.predict(batch)
    garbage = {m: torch.randn_like(v) * 5 for m, v in batch.x.items() if m != "text"}
    lengths = {m: torch.full_like(v, 3) if m != "text" else v for m, v in batch.lengths.items()}
    other = dataclasses.replace(batch.replace_features(garbage), lengths=lengths)
    assert out.shape == (len(batch),) and torch.allclose(model.predict(other), out, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------- mmin

MMIN_FAST = MMINConfig(embed=32, hidden=32, ae_layers=(64, 32, 16), n_blocks=3, cls_layers=(32,), epochs=30,
                       teacher_epochs=10, batch_size=32, lr=2e-3)


@pytest.fixture(scope="module")
def mmin_stages(tiny_mosi: Dataset) -> dict:
    """MMIN fitted stage by stage on tiny synth-mosi, with the teacher's state between the stages."""
    seed_everything(0)
    model, c = MMIN(tiny_mosi.spec, MMIN_FAST), ctx()
    model.fit_teacher(tiny_mosi, c)
    after_teacher = copy.deepcopy(model.teacher.state_dict())
    init_encoders = copy.deepcopy(model.encoders.state_dict())
    result = model.fit_mmin(tiny_mosi, c)
    return {"model": model, "after_teacher": after_teacher, "init_encoders": init_encoders, "result": result}


def test_teacher_is_frozen_and_initialises_the_encoders(mmin_stages: dict) -> None:
    model: MMIN = mmin_stages["model"]
    after = mmin_stages["after_teacher"]
    teacher_enc = {k.removeprefix("encoders."): v for k, v in after.items() if k.startswith("encoders.")}
    assert all(torch.equal(teacher_enc[k], v) for k, v in mmin_stages["init_encoders"].items())
    assert all(not p.requires_grad for p in model.teacher.parameters())
    assert all(torch.equal(v, model.teacher.state_dict()[k]) for k, v in mmin_stages["after_teacher"].items()), \
        "stage 2 must not change the teacher"
    model.train()
    assert not model.teacher.training, "the teacher must stay in eval mode (no dropout in its targets)"
    assert any(not torch.equal(v, model.encoders.state_dict()[k]) for k, v in mmin_stages["init_encoders"].items())


def test_imagination_loss_decreases(mmin_stages: dict) -> None:
    hist = [h["train_imagination"] for h in mmin_stages["result"].history]
    assert len(hist) == MMIN_FAST.epochs
    assert sum(hist[-3:]) / 3 < 0.7 * sum(hist[:2]) / 2, hist


def test_imagined_embedding_beats_the_mean_embedding(mmin_stages: dict, tiny_mosi: Dataset) -> None:
    """Text missing, held-out samples: in synth-mosi text observes ``a`` and audio/vision each observe ``0.5 a``
    plus their own factor, so text is the modality the other two predict best (audio's and vision's own factors
    are unpredictable by construction; on tiny data their imagined embeddings only reach the mean)."""
    model: MMIN = mmin_stages["model"].eval()
    keep = torch.tensor([False, True, True])
    e, sl = MMIN_FAST.embed, slice(0, MMIN_FAST.embed)
    with torch.no_grad():
        truth = model.teacher_target(tiny_mosi.test, keep.expand(len(tiny_mosi.test), 3))[:, sl]
        mean = model.teacher_target(tiny_mosi.train, keep.expand(len(tiny_mosi.train), 3))[:, sl].mean(0)
        imagined = model.imagine(tiny_mosi.test.drop(keep))[1][:, sl]
    assert truth.shape[-1] == e
    assert torch.mean((imagined - truth) ** 2) < 0.9 * torch.mean((mean - truth) ** 2)


def test_fit_records_both_stages(mmin_stages: dict) -> None:
    model: MMIN = mmin_stages["model"]
    diag = model.diagnostics()
    assert diag["teacher"]["epochs_run"] == MMIN_FAST.teacher_epochs and diag["mmin"]["epochs_run"] == MMIN_FAST.epochs
    assert diag["teacher"]["time_s"] > 0 and math.isfinite(diag["teacher"]["best_value"])
    extra = mmin_stages["result"].extra
    assert extra["stages"]["teacher"]["select_metric"] == "mae"
    assert len(extra["teacher_history"]) == MMIN_FAST.teacher_epochs


def test_training_patterns_are_the_incomplete_ones() -> None:
    pats = incomplete_patterns(3)
    assert pats.shape == (6, 3) and pats.any(-1).all() and not pats.all(-1).any()
    assert len({tuple(r.tolist()) for r in pats}) == 6


def test_schedule_is_constant_then_linear_decay() -> None:
    f = [lr_factor(e, 60, 0.5) for e in range(60)]
    assert f[:30] == [1.0] * 30
    assert f[30:] == pytest.approx([1 - k / 31 for k in range(1, 31)])


def test_optional_kaiming_init_as_the_reference_code(tiny_mosi: Dataset) -> None:
    seed_everything(0)
    model = MMIN(tiny_mosi.spec, MMINConfig(init="kaiming"))
    first = model.ae.encoders[0][0]  # Linear(384, 256)
    assert torch.count_nonzero(first.bias) == 0
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / 384), rel=0.05)
    seed_everything(0)
    default = MMIN(tiny_mosi.spec, MMINConfig()).ae.encoders[0][0]
    assert torch.count_nonzero(default.bias) > 0


def test_mmin_classification_selects_on_ua(tiny_iemocap: Dataset) -> None:
    seed_everything(0)
    model = MMIN(tiny_iemocap.spec, MMINConfig(epochs=2, teacher_epochs=2, batch_size=32))
    result = model.fit(tiny_iemocap, ctx())
    assert result.select_metric == "ua" and model.predict(tiny_iemocap.test).shape == (len(tiny_iemocap.test), 4)


def test_mmin_rejects_a_single_modality_dataset() -> None:
    spec = DatasetSpec("one", ("audio",), (5,), (10,), "regression", label_range=(-3.0, 3.0))
    with pytest.raises(ValueError, match="at least two modalities"):
        MMIN(spec, MMINConfig())


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"n_blocks": 0}, "MMINConfig.n_blocks"),
    ({"ae_layers": ()}, "MMINConfig.ae_layers"),
    ({"ae_layers": (256, 0)}, "MMINConfig.ae_layers"),
    ({"decay_fraction": 1.5}, "MMINConfig.decay_fraction"),
    ({"mse_weight": -1.0}, "MMINConfig.mse_weight"),
    ({"teacher_epochs": 0}, "MMINConfig.teacher_epochs"),
    ({"textcnn_kernels": ()}, "MMINConfig.textcnn_kernels"),
    ({"dropout": 1.0}, "MMINConfig.dropout"),
    ({"beta1": 1.0}, "MMINConfig.beta1"),
    ({"optimizer": "adamw"}, "MMINConfig.optimizer"),
])
def test_bad_mmin_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        MMINConfig(**kwargs)
