"""Real-dataset loaders on tiny files built here, in every supported layout: splits, dims, lengths, labels,
quirks, label views, preprocessing, the .npz round trip (library and CLI) and hand-written .npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fake_releases import DIMS, PICKLED, SIZES, dialogue, dump, minimal_npz, mmsa, mult
from typer.testing import CliRunner

from harness.cli import app
from harness.data import SPLITS, DataOptions, Dataset
from harness.datasets.real import convert
from harness.registry import DATASETS


def load(name: str, path: Path, **kw) -> Dataset:
    return DATASETS.get(name)(DataOptions(path=path, **kw))


def test_mmsa_unaligned(tmp_path: Path) -> None:
    obj, truth = mmsa()
    data = load("mosi", dump(obj, tmp_path / "unaligned_50.pkl"))
    assert data.spec.dims == (DIMS["text"], DIMS["audio"], DIMS["vision"]) and data.spec.seq_lens == (8, 10, 9)
    assert data.spec.task == "regression" and data.spec.label_range == (-3.0, 3.0)
    for s, n in SIZES.items():
        batch = data.split(s)
        assert len(batch) == n and batch.present.all()
        for m in DIMS:  # text lengths from the text_bert attention mask, audio/vision from *_lengths
            assert batch.lengths[m].tolist() == list(truth["lengths"][s][m]), (s, m)
        assert torch.equal(batch.y, torch.as_tensor(truth["labels"][s]))
        assert data.ids[s][0] == f"video{s}$_$0"
    prov = data.provenance
    assert prov["format"] == "mmsa" and not prov["aligned"] and prov["text_lengths"] == "text_bert attention mask"
    assert prov["nonfinite_replaced"]["total"] == truth["nonfinite"]
    assert prov["nonfinite_replaced"]["counts"]["train/audio"] == {"nan": 1, "+inf": 0, "-inf": 1}
    assert data.train.x["audio"][0, 0, :2].tolist() == [0.0, 0.0]
    assert sum(prov["padding_zeroed_steps"].values()) == truth["junk"]
    assert (data.train.x["audio"][1, truth["lengths"]["train"]["audio"][1]:] == 0).all()


@pytest.mark.parametrize("text_bert", [True, False])
def test_mmsa_aligned_lengths_come_from_the_text(tmp_path: Path, text_bert: bool) -> None:
    obj, truth = mmsa(aligned=True, text_bert=text_bert)
    data = load("mosi", dump(obj, tmp_path / "aligned_50.pkl"))
    assert data.provenance["aligned"] and data.spec.seq_lens == (8, 8, 8)
    for s in SPLITS:
        for m in DIMS:
            assert data.split(s).lengths[m].tolist() == list(truth["lengths"][s]["text"])
    assert sum(data.provenance["padding_zeroed_steps"].values()) == truth["junk"]


def test_mult_sentiment_left_padding_is_moved_and_inf_replaced(tmp_path: Path) -> None:
    obj, truth = mult()
    data = load("mosei", dump(obj, tmp_path / "mosei_senti_data.pkl", protocol=2))
    assert data.provenance["format"] == "mult" and data.provenance["aligned"]
    assert data.provenance["nonfinite_replaced"]["total"] == truth["nonfinite"]
    assert len(data.provenance["left_padding_moved"]) == 9
    for s in SPLITS:
        batch = data.split(s)
        assert batch.y.shape == (SIZES[s],) and torch.equal(batch.y, torch.as_tensor(truth["labels"][s]))
        for m in DIMS:
            assert batch.lengths[m].tolist() == list(truth["lengths"][s])
            assert np.array_equal(batch.x[m].numpy(), truth["right_padded"][s][m]), (s, m)
    assert data.ids["train"][3] == "vtrain/3/0"


def test_mult_iemocap_four_class_view_and_native_binary_tasks(tmp_path: Path) -> None:
    obj, truth = mult(emotions=True)
    path = dump(obj, tmp_path / "iemocap_data.pkl", protocol=5)
    four = load("iemocap", path)
    assert four.spec.classes == ("happy", "sad", "angry", "neutral")
    # rows 0 (two emotions) and 1 (none) are dropped; file order is neutral, happy, sad, angry
    assert four.provenance["dropped_not_exactly_one_emotion"] == {"train": 2, "valid": 2, "test": 2}
    expected = [("neutral", "happy", "sad", "angry")[i % 4] for i in range(2, SIZES["train"])]
    assert [four.spec.classes[c] for c in four.train.y.tolist()] == expected
    assert four.ids["train"][0] == "vtrain/2/0"
    happy = load("iemocap", path, iemocap_classes="binary:happy")
    assert happy.spec.classes == ("not_happy", "happy") and len(happy.train) == SIZES["train"]
    assert happy.train.y.tolist() == truth["labels"]["train"][:, 1].astype(int).tolist()
    with pytest.raises(ValueError, match="no 6-class labels"):
        load("iemocap", path, iemocap_classes="6")


def test_dialogue_six_and_four_class_views_and_validation_dialogues(tmp_path: Path) -> None:
    obj, truth = dialogue()
    path = dump(obj, tmp_path / "IEMOCAP_features_raw.pkl", protocol=2)
    six = load("iemocap", path, iemocap_classes="6")
    assert six.spec.seq_lens == (1, 1, 1) and six.spec.dims == (6, 5, 4) and len(six.spec.classes) == 6
    valid = six.provenance["valid_dialogues"]["ids"]
    assert len(valid) == 1 and valid[0] in truth["train_vids"]  # 10 % of training dialogues, never test
    split_of = {s: {i.rsplit("_", 1)[0] for i in six.ids[s]} for s in SPLITS}
    assert split_of["valid"] == set(valid) and split_of["test"] == set(truth["test_vids"])
    assert split_of["train"] == set(truth["train_vids"]) - set(valid)
    test_labels = [y for v in sorted(truth["test_vids"]) for y in truth["labels"][v]]
    assert six.test.y.tolist() == test_labels and (six.test.lengths["audio"] == 1).all()
    four = load("iemocap", path)
    frustrated = sum(y == 5 for y in test_labels)
    assert len(four.test) == len(test_labels) - frustrated
    assert four.provenance["dropped_frustrated"]["test"] == frustrated
    mapping = {0: "happy", 4: "happy", 1: "sad", 2: "neutral", 3: "angry"}
    assert [four.spec.classes[c] for c in four.test.y.tolist()] == [mapping[y] for y in test_labels if y != 5]
    assert load("iemocap", path).provenance["valid_dialogues"]["ids"] == valid  # deterministic
    other = {tuple(load("iemocap", path, seed=k).provenance["valid_dialogues"]["ids"]) for k in range(1, 6)}
    assert other - {tuple(valid)}, "the data seed changes which dialogues validate"


def _same(a: Dataset, b: Dataset) -> None:
    assert a.spec.dims == b.spec.dims and a.spec.seq_lens == b.spec.seq_lens and a.spec.classes == b.spec.classes
    for s in SPLITS:
        x, y = a.split(s), b.split(s)
        for m in x.x:
            assert torch.equal(x.x[m], y.x[m]) and torch.equal(x.lengths[m], y.lengths[m]), (s, m)
        assert torch.equal(x.y, y.y) and torch.equal(x.present, y.present) and x.y.dtype == y.y.dtype
        assert list(a.ids[s]) == list(b.ids[s])


def _convert_with_the_cli(src: Path, dst: Path, name: str) -> None:
    """``mibench data convert``: sentiment files named as NAME=SRC, IEMOCAP files recognised without a name."""
    res = CliRunner().invoke(app, ["data", "convert", f"{name}={src}" if name == "mosi" else str(src), str(dst)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("via", ["library", "cli"])
@pytest.mark.parametrize("layout", list(PICKLED))
def test_convert_round_trip_gives_identical_tensors(tmp_path: Path, layout: str, via: str) -> None:
    name, build = PICKLED[layout]
    src = dump(build()[0], tmp_path / "source.pkl")
    original = load(name, src)
    if via == "cli":
        _convert_with_the_cli(src, tmp_path / "out.npz", name)
    else:
        convert(src, tmp_path / "out.npz", name if name == "mosi" else None, DataOptions())
    again = load(name, tmp_path / "out.npz")
    _same(original, again)
    assert again.provenance["format"] == "mibench-npz"
    assert again.provenance["converted_from"]["sha256"] == original.provenance["sha256"]
    assert again.provenance["nonfinite_replaced"]["total"] == 0  # already clean
    _same(load("npz", tmp_path / "out.npz"), original)


def test_converted_iemocap_keeps_its_label_view(tmp_path: Path) -> None:
    src = dump(dialogue()[0], tmp_path / "IEMOCAP_features.pkl")
    convert(src, tmp_path / "six.npz", None, DataOptions(iemocap_classes="6"))
    assert len(load("iemocap", tmp_path / "six.npz", iemocap_classes="6").spec.classes) == 6
    with pytest.raises(ValueError, match="label_view: the file holds the '6' IEMOCAP view but iemocap_classes is '4'"):
        load("iemocap", tmp_path / "six.npz")


def test_nan_value_pool_and_standardize_are_applied_and_recorded(tmp_path: Path) -> None:
    path = dump(mmsa()[0], tmp_path / "u.pkl")
    plain = load("mosi", path)
    assert load("mosi", path, nan_value=-1.0).train.x["audio"][0, 0, :2].tolist() == [-1.0, -1.0]
    pooled = load("mosi", path, pool=True)
    assert pooled.spec.seq_lens == (1, 1, 1) and (pooled.test.lengths["audio"] == 1).all()
    ln = int(plain.test.lengths["audio"][3])
    assert torch.allclose(pooled.test.x["audio"][3, 0], plain.test.x["audio"][3, :ln].mean(0))
    std = load("mosi", path, standardize=True)
    x, lengths = std.train.x["vision"], std.train.lengths["vision"]
    valid = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    rows = x[valid]
    assert torch.allclose(rows.mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(rows.std(0, unbiased=False), torch.ones(4), atol=1e-4)
    assert (x[~valid] == 0).all()
    raw = plain.train.x["vision"][valid]  # test uses the training statistics, not its own
    mean, sd = raw.double().mean(0), raw.double().std(0, unbiased=False)
    ln = int(plain.test.lengths["vision"][0])
    expected = (plain.test.x["vision"][0, :ln].double() - mean) / sd
    assert torch.allclose(std.test.x["vision"][0, :ln].double(), expected, atol=1e-5)
    assert std.provenance["preprocessing"]["standardize"]["vision"]["constant_features"] == 0
    assert plain.provenance["preprocessing"] == {"pool": False, "standardize": False}


def test_a_hand_written_npz_with_only_the_required_keys(tmp_path: Path) -> None:
    arrays = minimal_npz(tmp_path / "mine.npz")  # no lengths, ids, present or classes
    data = load("npz", tmp_path / "mine.npz")
    assert data.spec.modalities == ("text", "audio", "vision") and data.spec.dims == (3, 4, 5)
    assert data.spec.seq_lens == (4, 4, 4) and data.spec.classes == ()
    ys = np.concatenate([arrays[f"{s}/labels"] for s in SIZES])  # no label_range declared: inferred, warned
    assert data.spec.label_range == (float(ys.min()), float(ys.max()))
    assert data.provenance["label_range_inferred"] == [float(ys.min()), float(ys.max())]
    for s, n in SIZES.items():
        batch = data.split(s)
        assert batch.present.shape == (n, 3) and batch.present.all()
        assert list(data.ids[s]) == [f"{s}/{i}" for i in range(n)]
        assert torch.equal(batch.y, torch.as_tensor(arrays[f"{s}/labels"]))
        for m in data.spec.modalities:  # lengths = T, derived from the non-zero rows
            expected = [4] * n if (s, m) != ("train", "text") else [3] + [4] * (n - 1)
            assert batch.lengths[m].tolist() == expected, (s, m)
            assert torch.equal(batch.x[m], torch.as_tensor(arrays[f"{s}/{m}"]))
    assert data.provenance["nonfinite_replaced"]["total"] == 0 and not data.provenance["padding_zeroed_steps"]


def test_npz_keeps_other_modality_names_in_their_order(tmp_path: Path) -> None:
    minimal_npz(tmp_path / "two.npz", modalities=("language", "acoustic"), task="classification")
    data = load("npz", tmp_path / "two.npz")
    assert data.spec.modalities == ("language", "acoustic") and data.spec.dims == (3, 4)
    assert data.spec.classes == ("calm", "tense", "upbeat") and data.train.y.dtype == torch.int64
    assert list(data.train.x) == ["language", "acoustic"] and data.test.present.shape == (SIZES["test"], 2)
    pooled = load("npz", tmp_path / "two.npz", pool=True, standardize=True)
    assert pooled.spec.seq_lens == (1, 1) and set(pooled.provenance["preprocessing"]["standardize"]) >= {
        "language", "acoustic"}


def test_npz_present_mask_is_kept_and_absent_features_are_zeroed(tmp_path: Path) -> None:
    present = np.ones((SIZES["valid"], 3), dtype=bool)
    present[:2, 1] = False  # audio not recorded for two samples, yet the file holds non-zero audio there
    minimal_npz(tmp_path / "p.npz", changes={"valid/present": present})
    data = load("npz", tmp_path / "p.npz")
    assert torch.equal(data.valid.present, torch.as_tensor(present)) and data.train.present.all()
    assert (data.valid.x["audio"][:2] == 0).all() and (data.valid.x["audio"][2:] != 0).any()
    assert data.provenance["absent_features_zeroed"] == {"valid/audio": 2 * 4}
