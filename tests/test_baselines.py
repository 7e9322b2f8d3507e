"""Method-specific tests for the baselines (the shared contract is in test_method_contract.py).

Configs: wrong types and unknown selection metrics fail at construction, naming the class and field.
modality_dropout: drops at the configured rate in training (measured over many batches), never at evaluation.
mmin: the imagination loss falls, the imagined embedding of a missing modality beats the mean embedding, the
teacher stage leaves a frozen teacher whose encoders initialise MMIN. Its parts are checked against the paper
(Sec. 3) by computations written here independently of the code under test: encoders, the cascade's residual
wiring and classifier input, the loss, uniform per-sample patterns, the teacher target, per-sub-network clipping,
pattern-averaged validation. Bad configs fail before training.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
import torch

from baselines.encoders import LSTMMaxPoolEncoder, TextCNNEncoder
from baselines.mmin.model import MMINConfig
from baselines.modal_immune import ModalImmuneConfig
from baselines.modality_dropout import ModalityDropout, ModalityDropoutConfig
from baselines.vanilla_fusion import VanillaFusion, VanillaFusionConfig
from harness.config import method_config
from harness.data import Dataset
from harness.seeding import torch_generator
from harness.selection import Selection
from harness.training import FitContext


def ctx(seed: int = 0) -> FitContext:
    return FitContext(torch.device("cpu"), torch_generator(seed), seed)


def conditional_drop_rate(p: tuple[float, ...]) -> list[float]:
    """P(modality m dropped | at least one kept) for independent drops with probabilities ``p``."""
    all_dropped = math.prod(p)
    return [(pm - all_dropped) / (1 - all_dropped) for pm in p]


# -------------------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    (MMINConfig, {"n_blocks": "3"}, r"MMINConfig\.n_blocks = '3' \(str\) is invalid; expected int$"),
    (MMINConfig, {"n_blocks": 2.5}, r"MMINConfig\.n_blocks = 2\.5 \(float\) is invalid; expected int$"),
    (VanillaFusionConfig, {"embed": 2.5}, r"VanillaFusionConfig\.embed = 2\.5 .*expected int$"),
    (VanillaFusionConfig, {"epochs": True}, r"VanillaFusionConfig\.epochs = True \(bool\).*expected int$"),
    (VanillaFusionConfig, {"lr": "1e-3"}, r"VanillaFusionConfig\.lr = '1e-3' .*expected float"),
    (VanillaFusionConfig, {"fusion": "middle"}, r"VanillaFusionConfig\.fusion = 'middle' .*one of 'late', 'early'"),
    (ModalityDropoutConfig, {"p": [0.3]}, r"ModalityDropoutConfig\.p = \[0\.3\] \(list\).*tuple\[float, \.\.\.\]"),
    (ModalityDropoutConfig, {"p": (0.3, True)}, r"ModalityDropoutConfig\.p = \(0\.3, True\)"),
    (MMINConfig, {"ae_layers": (256, 128.0)}, r"MMINConfig\.ae_layers = \(256, 128\.0\) .*tuple\[int, \.\.\.\]"),
    (MMINConfig, {"textcnn_modalities": "text"}, r"MMINConfig\.textcnn_modalities = 'text' .*tuple\[str, \.\.\.\]"),
    (MMINConfig, {"init": "xavier"}, r"MMINConfig\.init = 'xavier' .*one of 'default', 'kaiming'"),
    (ModalImmuneConfig, {"use_collapse": 1}, r"ModalImmuneConfig\.use_collapse = 1 \(int\).*expected bool$"),
    (ModalImmuneConfig, {"bandit": 3}, r"ModalImmuneConfig\.bandit = 3 .*expected str$"),
])
def test_wrong_types_name_class_field_value_and_type(cls: type, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_numbers_of_the_right_kind_are_accepted() -> None:
    assert VanillaFusionConfig(lr=1, dropout=0).lr == 1  # an int where a float is expected is fine
    assert ModalityDropoutConfig(p=(0, 0.5, 0)).p == (0, 0.5, 0)
    assert MMINConfig(textcnn_modalities=(), cls_layers=()).cls_layers == ()
    assert ModalImmuneConfig(stable_rank_sign=1).stable_rank_sign == 1


def test_selection_is_a_run_option_never_a_methods() -> None:
    with pytest.raises(ValueError, match=r"--select-metric: Unknown metric 'acc8'.*Did you mean 'acc7'"):
        Selection("complete", "acc8")
    with pytest.raises(ValueError, match=r"select_metric is a run option.*--select-metric"):
        method_config("vanilla_fusion", {"vanilla_fusion": {"select_metric": "ua"}})
    with pytest.raises(ValueError, match=r"select is a run option.*--select"):
        method_config("mmin", {"*": {"select": "incomplete"}})
    assert Selection("incomplete", "wa").metric_for("classification") == "wa"  # the task is checked per dataset
    with pytest.raises(ValueError, match="wa is a classification metric but the dataset task is regression"):
        Selection("complete", "wa").metric_for("regression")


def test_a_selection_alone_knows_the_metrics() -> None:
    """Importing the selection module registers the metrics it is checked against: no import order needed."""
    code = ("from harness.selection import Selection as S; assert S('all', 'mae'); "
            "import harness.registry as r; assert 'ua' in r.METRICS")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


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
