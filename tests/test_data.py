"""Data model and synthetic datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import Batch, DataOptions, Dataset, DatasetSpec, batch_from_numpy
from harness.registry import DATASETS


def test_drop_zeroes_removed_features_and_never_modifies_input(tiny_mosi: Dataset) -> None:
    test = tiny_mosi.test
    before = {m: v.clone() for m, v in test.x.items()}
    keep = torch.tensor([True, False, True])
    out = test.drop(keep)
    assert out.present[:, 1].logical_not().all() and out.present[:, [0, 2]].all()
    assert (out.x["audio"] == 0).all() and torch.equal(out.x["text"], test.x["text"])
    assert all(torch.equal(before[m], test.x[m]) for m in before)
    assert test.present.all()


def test_drop_is_cumulative_per_row(tiny_mosi: Dataset) -> None:
    test = tiny_mosi.test
    rows = torch.zeros(len(test), 3, dtype=torch.bool)
    rows[:, 0] = True
    once = test.drop(rows)
    twice = once.drop(torch.tensor([False, True, True]))
    assert not twice.present.any()


def test_synthetic_is_deterministic_and_seed_dependent() -> None:
    load = DATASETS.get("synth-mosi")
    a, b = load(DataOptions(preset="tiny")), load(DataOptions(preset="tiny"))
    c = load(DataOptions(preset="tiny", seed=1))
    assert torch.equal(a.train.x["text"], b.train.x["text"]) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x["text"], c.train.x["text"])


def test_synth_mosi_labels_look_like_mosi() -> None:
    data = DATASETS.get("synth-mosi")(DataOptions(preset="small"))
    y = torch.cat([data.train.y, data.valid.y, data.test.y]).numpy()
    assert y.min() >= -3 and y.max() <= 3
    assert 0.02 < np.mean(y == 0) < 0.15, "exact zeros present, as in MOSI"
    assert np.any(np.isclose(np.abs(y) % 1, 0.5)), ".5 values present"
    assert 0.35 < np.mean(y > 0) < 0.65
    assert (data.train.lengths["audio"] < data.spec.seq_lens[1]).any(), "per-sample lengths vary"
    padded = data.train.x["audio"][torch.arange(data.spec.seq_lens[1]) >= data.train.lengths["audio"][:, None]]
    assert (padded == 0).all()


def test_synth_iemocap_is_imbalanced_four_class() -> None:
    data = DATASETS.get("synth-iemocap")(DataOptions(preset="small"))
    counts = np.bincount(data.train.y.numpy(), minlength=4) / len(data.train)
    assert data.spec.classes == ("happy", "sad", "angry", "neutral")
    assert counts[3] > counts[1] + 0.05 and counts[0] > counts[2] + 0.05
    assert data.spec.seq_lens == (1, 1, 1)


def test_presets_match_the_real_corpora_sizes() -> None:
    from harness.datasets.synthetic import IEMOCAP_PRESETS, MOSI_PRESETS

    assert MOSI_PRESETS["full"].sizes == (1284, 229, 686) and MOSI_PRESETS["full"].dims == (768, 5, 20)
    assert sum(IEMOCAP_PRESETS["full"].sizes[:2]) == 4290 and IEMOCAP_PRESETS["full"].sizes[2] == 1241
    data = DATASETS.get("synth-iemocap")(DataOptions(preset="full"))  # cheap (T = 1); built, not just declared
    assert (len(data.train), len(data.valid), len(data.test)) == IEMOCAP_PRESETS["full"].sizes
    tiny = DATASETS.get("synth-mosi")(DataOptions(preset="tiny"))
    assert (len(tiny.train), len(tiny.valid), len(tiny.test)) == MOSI_PRESETS["tiny"].sizes


def test_validate_reports_the_offending_key() -> None:
    spec = DatasetSpec("d", ("text", "audio"), (4, 2), (3, 3), "regression", label_range=(-3, 3))
    x = {"text": np.zeros((5, 3, 4)), "audio": np.zeros((5, 3, 2))}
    ok = batch_from_numpy(x, np.zeros(5, dtype=np.float32))
    ok.validate(spec, "d/train")
    with pytest.raises(ValueError, match="d/train: 'audio' features have shape \\(5, 3, 3\\), expected \\[5, 3, 2\\]"):
        batch_from_numpy({**x, "audio": np.zeros((5, 3, 3))}, np.zeros(5, dtype=np.float32)).validate(spec, "d/train")
    with pytest.raises(ValueError, match="outside \\[-3, 3\\]"):
        batch_from_numpy(x, np.full(5, 4.0, dtype=np.float32)).validate(spec, "d/train")
    with pytest.raises(ValueError, match="'text' lengths must be"):
        batch_from_numpy(x, np.zeros(5, dtype=np.float32), lengths={"text": np.full(5, 4)}).validate(spec, "d/x")
    bad = {**x, "text": np.full((5, 3, 4), np.nan)}
    with pytest.raises(ValueError, match="'text' features contain NaN"):
        batch_from_numpy(bad, np.zeros(5, dtype=np.float32)).validate(spec, "d/x")
    present = np.ones((5, 2), dtype=bool)
    present[[1, 3]] = False
    with pytest.raises(ValueError, match="d/test: 2 sample\\(s\\) have no modality present \\(row 1 first\\)"):
        batch_from_numpy(x, np.zeros(5, dtype=np.float32), present=present).validate(spec, "d/test")


def test_spec_checks() -> None:
    with pytest.raises(ValueError, match="must match"):
        DatasetSpec("d", ("text",), (4, 2), (1,), "regression")
    with pytest.raises(ValueError, match="at least 2 classes"):
        DatasetSpec("d", ("text",), (4,), (1,), "classification", classes=("a",))
    with pytest.raises(ValueError, match="has no modality 'video'"):
        DatasetSpec("d", ("text",), (4,), (1,), "regression").index("video")


def test_cat_and_index_round_trip(tiny_iemocap: Dataset) -> None:
    t = tiny_iemocap.test
    both = Batch.cat([t, t])
    assert len(both) == 2 * len(t)
    back = both.index(torch.arange(len(t), 2 * len(t)))
    assert torch.equal(back.x["vision"], t.x["vision"]) and torch.equal(back.y, t.y)
