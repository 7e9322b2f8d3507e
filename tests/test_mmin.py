"""MMIN (Zhao et al., ACL 2021): teacher stage, imagination, cascade wiring, loss weights, patterns, clipping,
validation selection, bad configs and card."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare
from sklearn.metrics import mean_absolute_error, recall_score

from baselines.encoders import LSTMEncoder, LSTMMaxPoolEncoder, MLPEncoder, TextCNNEncoder
from baselines.mmin.model import MMIN, MMINConfig
from harness.config import method_config
from harness.data import Batch, Dataset, DatasetSpec
from harness.seeding import seed_everything, torch_generator
from harness.selection import Selection, patterns
from harness.training import Budget, FitContext, lr_factor, train_stage


def ctx(seed: int = 0, select: str = "complete") -> FitContext:
    return FitContext(torch.device("cpu"), torch_generator(seed), seed, selection=Selection(select))


def mmin_stage(model: MMIN, data: Dataset, c: FitContext):
    """MMIN's second stage as the loop gets it (the teacher stage is skipped: asking for the next stage freezes
    the untrained teacher and copies its encoders)."""
    stages = model.stages(data, c)
    next(stages)
    return next(stages)


MMIN_FAST = MMINConfig(embed=32, hidden=32, ae_layers=(64, 32, 16), n_blocks=3, cls_layers=(32,), epochs=30,
                       teacher_epochs=10, batch_size=32, lr=2e-3, patience=1000)


@pytest.fixture(scope="module")
def mmin_stages(tiny_mosi: Dataset) -> dict:
    """MMIN fitted stage by stage on tiny synth-mosi, with the teacher's state between the stages."""
    seed_everything(0)
    model, c, snaps = MMIN(tiny_mosi.spec, MMIN_FAST), ctx(), {}
    original = model.stages

    def stages(data: Dataset, fit_ctx: FitContext):  # the loop's own stages, with the states between them kept
        gen = original(data, fit_ctx)
        yield next(gen)
        second = next(gen)  # the teacher is trained, frozen, and MMIN's encoders start from it
        snaps["after_teacher"] = copy.deepcopy(model.teacher.state_dict())
        snaps["init_encoders"] = copy.deepcopy(model.encoders.state_dict())
        yield second

    model.stages = stages  # type: ignore[method-assign]
    result = model.fit(tiny_mosi, c)
    return {"model": model, "result": result, **snaps}


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
    stages = mmin_stages["result"].extra["stages"]
    assert stages["teacher"]["epochs_run"] == MMIN_FAST.teacher_epochs
    assert stages["mmin"]["epochs_run"] == MMIN_FAST.epochs
    assert stages["teacher"]["time_s"] > 0 and math.isfinite(stages["teacher"]["best_value"])
    assert stages["teacher"]["select_metric"] == "mae" and stages["teacher"]["selection_policy"] == "complete"
    assert len(mmin_stages["result"].extra["stage_history"]["teacher"]) == MMIN_FAST.teacher_epochs


def test_training_patterns_are_the_incomplete_ones() -> None:
    pats = patterns(3, "incomplete")
    assert pats.shape == (6, 3) and pats.any(-1).all() and not pats.all(-1).any()
    assert len({tuple(r.tolist()) for r in pats}) == 6


def test_paper_schedule_is_constant_then_linear_decay() -> None:
    budget = Budget(epochs=60, patience=1000, batch_size=128, lr_schedule="linear_decay", decay_fraction=0.5)
    f = [lr_factor(budget, e, 0, 1) for e in range(60)]
    assert f[:30] == [1.0] * 30
    assert f[30:] == pytest.approx([1 - k / 31 for k in range(1, 31)])
    assert method_config("mmin", {}, "paper").lr_schedule == "linear_decay"


def test_paper_recipe_is_the_reference_codes(tiny_mosi: Dataset) -> None:
    """AIM3-RUC/MMIN master (69a45fe): teacher clip 0.5, weight decay 0 (MMIN's optimizer ignores the script's
    1e-5), 20 + 60 epochs; its Kaiming init was worse on validation, so the recipe keeps PyTorch's (an option);
    the shared backbone gives the teacher the run's own budget instead."""
    paper = method_config("mmin", {}, "paper")
    model = MMIN(tiny_mosi.spec, paper)
    assert (paper.teacher["grad_clip"], paper.weight_decay, paper.init) == (0.5, 0.0, "default")
    assert model.teacher_budget().epochs == 20 and model.planned_epochs() == 80
    shared = MMIN(tiny_mosi.spec, MMINConfig())
    assert shared.teacher_budget() == MMINConfig().budget() and shared.planned_epochs() == 2 * MMINConfig().epochs


def test_optional_kaiming_init_as_the_reference_code(tiny_mosi: Dataset) -> None:
    seed_everything(0)
    model = MMIN(tiny_mosi.spec, MMINConfig(init="kaiming"))
    first = model.ae.encoders[0][0]  # Linear(M * embed, 256)
    assert torch.count_nonzero(first.bias) == 0
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / first.in_features), rel=0.05)
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
    ({"optimizer": "sgd"}, "MMINConfig.optimizer"),
])
def test_bad_mmin_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        MMINConfig(**kwargs)


def test_mmin_textcnn_modalities_must_be_modalities_of_the_dataset(tiny_mosi: Dataset) -> None:
    with pytest.raises(ValueError, match=r"MMINConfig\.textcnn_modalities names \['txt'\].*'synth-mosi'.*"
                                         r"\['text', 'audio', 'vision'\]"):
        MMIN(tiny_mosi.spec, MMINConfig(textcnn_modalities=("text", "txt")))
    none = MMIN(tiny_mosi.spec, MMINConfig(textcnn_modalities=(), seq_encoder="lstm_maxpool"))
    assert all(isinstance(e, LSTMMaxPoolEncoder) for e in none.encoders.values())  # no TextCNN: LSTMs everywhere
    shared = MMIN(tiny_mosi.spec, MMINConfig())  # the shared backbone: the run's LSTM encoder for every sequence
    assert all(isinstance(e, LSTMEncoder) for e in shared.encoders.values())


def test_mmin_card_keeps_the_unlabelled_row_out_of_reported_numbers() -> None:
    """The one transcribed paper row does not say WA or UA: reports must not show it as either (anchors.md Sec. 2)."""
    assert all(r.metric in ("wa", "ua") for r in MMIN.card.reported)
    assert "59.00" in MMIN.card.notes and "WA or UA" in MMIN.card.notes


# ---------------------------------------------------------------------------- mmin, checked against the paper

MMIN_SMALL = MMINConfig(embed=16, hidden=16, ae_layers=(32, 16, 8), n_blocks=2, cls_layers=(16,), batch_size=32)
PATTERNS = [keep for keep in itertools.product([True, False], repeat=3) if any(keep) and not all(keep)]


def spy_on_imagine(model: MMIN) -> list[Batch]:
    """Record every batch MMIN's ``imagine`` sees (in training: the batch after its pattern was applied)."""
    seen: list[Batch] = []
    original = model.imagine

    def imagine(batch: Batch) -> Any:
        seen.append(batch)
        return original(batch)

    model.imagine = imagine  # type: ignore[method-assign]
    return seen


def reference_target(model: MMIN, batch: Batch, keep: torch.Tensor) -> torch.Tensor:
    """Sec. 3.2 / the reference's ``T_embds``: per modality, the teacher's encoder on the input multiplied by
    ``1 - keep`` (missing modalities seen, available ones zeroed), concatenated in the spec's order."""
    parts = []
    for j, m in enumerate(model.spec.modalities):
        missing = (~keep[:, j]).to(torch.float32).view(-1, 1, 1)
        parts.append(model.teacher.encoders[m](batch.x[m] * missing, batch.lengths[m]))
    return torch.cat(parts, dim=-1)


def test_mmin_encoders_follow_the_paper(tiny_mosi: Dataset, tiny_iemocap: Dataset) -> None:
    paper = method_config("mmin", {}, "paper")
    model, batch = MMIN(tiny_mosi.spec, paper).eval(), tiny_mosi.test
    kinds = {"text": TextCNNEncoder, "audio": LSTMMaxPoolEncoder, "vision": LSTMMaxPoolEncoder}
    assert {m: type(e) for m, e in model.encoders.items()} == kinds
    assert {m: type(e) for m, e in model.teacher.encoders.items()} == kinds
    text, audio = model.encoders["text"], model.encoders["audio"]
    assert [(c.kernel_size[0], c.out_channels) for c in text.convs] == [(3, 128), (4, 128), (5, 128)]
    assert audio.lstm.hidden_size == 128 and not audio.lstm.bidirectional
    with torch.no_grad():
        for m, enc in model.encoders.items():
            assert enc(batch.x[m], batch.lengths[m]).shape == (len(batch), 128), m
        x = batch.x["audio"]  # max over time of the LSTM's states, not its last state
        assert torch.allclose(audio(x, torch.full_like(batch.lengths["audio"], x.shape[1])), audio.lstm(x)[0].amax(1))
        assert model.imagine(batch)[0].shape == (len(batch), 384)
    utterance = MMIN(tiny_iemocap.spec, paper).eval()  # T = 1 for every modality, text included
    assert all(type(e) is MLPEncoder for e in utterance.encoders.values())
    b = tiny_iemocap.test
    assert all(e(b.x[m], b.lengths[m]).shape == (len(b), 128) for m, e in utterance.encoders.items())


def test_cascade_residual_wiring_and_classifier_input(tiny_mosi: Dataset) -> None:
    model = MMIN(tiny_mosi.spec, MMINConfig()).eval()
    batch = tiny_mosi.test.drop(torch.tensor([True, False, True]))
    enc_in, latents, dec_out, head_in = [], [], [], []

    def record_block(_: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:  # None: the output stays
        enc_in.append(args[0])
        latents.append(out)

    hooks = [e.register_forward_hook(record_block) for e in model.ae.encoders]
    hooks += [d.register_forward_hook(lambda _, a, out: dec_out.append(out)) for d in model.ae.decoders]
    hooks.append(model.head.register_forward_pre_hook(lambda _, a: head_in.append(a[0])))
    with torch.no_grad():
        recon = model.imagine(batch)[1]
        model(batch)
        for h in hooks:
            h.remove()
        h0 = torch.cat([model.encoders[m](batch.x[m], batch.lengths[m]) for m in tiny_mosi.spec.modalities], -1)
        assert len(enc_in) == 10 and len(head_in) == 1  # 5 blocks, imagine + forward
        assert torch.allclose(enc_in[0], h0)  # block 1 reads the observed (zero-filled) representation
        for i in range(1, 5):  # block i reads block i-1's input plus block i-1's output
            assert torch.allclose(enc_in[i], enc_in[i - 1] + dec_out[i - 1], atol=1e-6), i
        assert torch.allclose(recon, model.ae.transition(enc_in[4] + dec_out[4]), atol=1e-6)
    assert [z.shape[-1] for z in latents[:5]] == [64] * 5 and head_in[0].shape == (len(batch), 320)
    assert torch.equal(head_in[0], torch.cat(latents[5:], dim=-1))


@pytest.mark.parametrize("regression_loss", ["l1", "mse"])
def test_total_loss_is_task_plus_4_imagination_plus_2_cycle(regression_loss: str, tiny_data: Dataset) -> None:
    assert (MMINConfig().task_weight, MMINConfig().mse_weight, MMINConfig().cycle_weight) == (1.0, 4.0, 2.0)
    seed_everything(0)
    model = MMIN(tiny_data.spec, dataclasses.replace(MMIN_SMALL, regression_loss=regression_loss))
    model.eval()  # no dropout, so every term can be recomputed exactly
    seen, batch = spy_on_imagine(model), tiny_data.train
    with torch.no_grad():
        terms = model.loss_terms(batch, torch_generator(5))
        keep = seen[0].present
        h = torch.cat([model.encoders[m](batch.x[m] * keep[:, j, None, None], batch.lengths[m])
                       for j, m in enumerate(tiny_data.spec.modalities)], -1)
        recon, latents = model.ae(h)
        out = model.head(latents)
        if tiny_data.spec.task == "classification":
            task = F.cross_entropy(out, batch.y)
        else:
            task = (F.l1_loss if regression_loss == "l1" else F.mse_loss)(out.squeeze(-1), batch.y)
        imagination = F.mse_loss(recon, reference_target(model, batch, keep))
        cycle = F.mse_loss(model.ae_cycle(recon)[0], h)
    expected = {"task": task, "imagination": imagination, "cycle": cycle, "loss": task + 4 * imagination + 2 * cycle}
    assert {k: float(v) for k, v in terms.items()} == pytest.approx({k: float(v) for k, v in expected.items()},
                                                                     rel=1e-5)


def test_training_patterns_are_uniform_over_the_incomplete_ones_per_sample(tiny_mosi: Dataset) -> None:
    model = MMIN(tiny_mosi.spec, MMIN_SMALL).eval()
    seen, gen = spy_on_imagine(model), torch_generator(11)
    with torch.no_grad():
        for _ in range(40):
            model.loss_terms(tiny_mosi.train, gen)
    keeps = torch.cat([b.present for b in seen])  # [40 * 96, 3]; the training split is complete
    counts = {p: 0 for p in itertools.product([True, False], repeat=3)}
    for row in keeps.tolist():
        counts[tuple(row)] += 1
    assert counts[(True, True, True)] == 0 and counts[(False, False, False)] == 0, "only incomplete patterns"
    observed = [counts[p] for p in PATTERNS]  # expected 640 each
    assert chisquare(observed).pvalue > 1e-4, observed  # fails for e.g. one pattern at 1.3x the others' rate
    assert all(len({tuple(r) for r in b.present.tolist()}) == 6 for b in seen), "drawn per sample, not per batch"


def test_teacher_target_is_the_missing_modalities_with_the_available_ones_zeroed(tiny_mosi: Dataset) -> None:
    model, batch = MMIN(tiny_mosi.spec, MMIN_SMALL).eval(), tiny_mosi.train
    keep = torch.tensor(PATTERNS)[torch.arange(len(batch)) % 6]  # [N, 3], every pattern present
    target = model.teacher_target(batch, keep)
    with torch.no_grad():
        assert torch.allclose(target, reference_target(model, batch, keep), atol=1e-6)
        text = model.teacher.encoders["text"]
        real = text(batch.x["text"], batch.lengths["text"])
        zero = text(torch.zeros_like(batch.x["text"]), batch.lengths["text"])
    e, missing = MMIN_SMALL.embed, ~keep[:, 0]
    assert torch.allclose(target[missing, :e], real[missing], atol=1e-6)  # missing: the teacher sees the input
    assert torch.allclose(target[~missing, :e], zero[~missing], atol=1e-6)  # available: a zero input
    assert not torch.allclose(real[~missing], zero[~missing]), "the test must tell the two apart"


def test_gradients_are_clipped_per_sub_network(tiny_mosi: Dataset) -> None:
    """After one step on a batch with a huge loss, every group's gradient norm is at most ``grad_clip``, and the
    groups that exceeded it sit *at* it (so the total is above the clip: not one global clip)."""
    seed_everything(0)
    cfg = dataclasses.replace(MMIN_SMALL, epochs=1, batch_size=96, regression_loss="mse")
    data = dataclasses.replace(tiny_mosi, train=dataclasses.replace(tiny_mosi.train, y=tiny_mosi.train.y * 10000))
    model = MMIN(tiny_mosi.spec, cfg)

    def norms(net: MMIN) -> dict[str, float]:
        """Gradient norm of each sub-network the reference clips on its own: each encoder, both AEs, the head."""
        groups = {**{f"enc_{m}": e for m, e in net.encoders.items()}, "ae": net.ae, "ae_cycle": net.ae_cycle,
                  "head": net.head}
        return {k: float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in g.parameters()])))
                for k, g in groups.items()}

    raw_model = copy.deepcopy(model).train()
    raw_model.loss_terms(data.train, torch_generator(1))["loss"].backward()
    raw = norms(raw_model)
    assert sum(v > 10 for v in raw.values()) >= 3, raw  # the batch does need clipping
    c = ctx()
    train_stage(mmin_stage(model, data, c), data.train, c)  # one batch: the gradients left are that step's, clipped
    clipped = norms(model)
    assert all(v <= 1.0 + 1e-4 for v in clipped.values()), clipped
    assert all(clipped[k] == pytest.approx(1.0, rel=1e-3) for k, v in raw.items() if v > 10), clipped
    assert math.sqrt(sum(v ** 2 for v in clipped.values())) > 1.5, "one global clip would keep the total at 1"


def hand_score(pred: np.ndarray, y: np.ndarray, task: str) -> float:
    if task == "regression":
        return mean_absolute_error(y, pred)
    return recall_score(y, pred.argmax(-1), labels=np.unique(y), average="macro")


def test_validation_selection_averages_the_metric_over_incomplete_patterns(tiny_data: Dataset) -> None:
    seed_everything(0)
    model, c = MMIN(tiny_data.spec, dataclasses.replace(MMIN_SMALL, epochs=2)), ctx(select="incomplete")
    result = train_stage(mmin_stage(model, tiny_data, c), tiny_data.train, c)  # best epoch restored: recompute it
    valid, task = tiny_data.valid, tiny_data.spec.task
    y = valid.y.numpy()
    per_pattern = [hand_score(model.predict(valid.drop(torch.tensor(p))).numpy(), y, task) for p in PATTERNS]
    assert result.select_metric == ("mae" if task == "regression" else "ua")
    assert result.best_value == pytest.approx(float(np.mean(per_pattern)), rel=1e-6)
    if task == "regression":  # MAE is continuous, so adding the complete pattern would move the mean
        full = hand_score(model.predict(valid).numpy(), y, task)
        assert result.best_value != pytest.approx(float(np.mean([*per_pattern, full])), rel=1e-6), "full counted"
