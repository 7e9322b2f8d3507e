"""Degenerate data gives reports that say what is degenerate, never a crash; labels are checked against the range
a file declares (or that the dataset implies); features must be real numbers."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_releases import minimal_npz
from typer.testing import CliRunner

from harness.cli import app
from harness.data import DataOptions, Dataset
from harness.datasets.npz import save_npz
from harness.registry import DATASETS
from harness.store import RunStore


def first(data: Dataset, split: str, n: int, **changes) -> Dataset:
    """``data`` with ``split`` cut to its first ``n`` samples (and ``changes`` applied to that batch)."""
    batch = dataclasses.replace(data.split(split).index(torch.arange(n)), **changes)
    return dataclasses.replace(data, **{split: batch}, ids={**data.ids, split: data.ids[split][:n]})


@pytest.mark.slow
def test_one_sample_splits_unscored_conditions_and_a_single_class_are_reported_not_crashed(
        tmp_path: Path, tiny_mosi: Dataset, tiny_iemocap: Dataset) -> None:
    # regression: 1 training and 1 test sample, and that test sample has no vision (so "vision" scores nobody)
    mosi = first(first(tiny_mosi, "train", 1), "test", 1)
    present = mosi.test.present.clone()
    present[:, 2] = False
    mosi = dataclasses.replace(mosi, test=dataclasses.replace(mosi.test, present=present,
                                                              x={**mosi.test.x, "vision": mosi.test.x["vision"] * 0}))
    # classification: 1 validation sample, and every test sample of one class
    iemocap = first(tiny_iemocap, "valid", 1)
    iemocap = dataclasses.replace(iemocap, test=dataclasses.replace(iemocap.test, y=torch.zeros_like(iemocap.test.y)))
    save_npz(mosi, tmp_path / "mosi.npz")
    save_npz(iemocap, tmp_path / "iemocap.npz")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "--methods", "vanilla_fusion", "--datasets",
                                   f"mosi={tmp_path / 'mosi.npz'},iemocap={tmp_path / 'iemocap.npz'}", "--seeds", "2",
                                   "--set", "epochs=1", "--protocols", "fixed_pattern", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "report not written" not in res.output
    rec = RunStore.read(out).records()
    assert (rec[(rec.dataset == "mosi") & (rec.condition == "vision")]["n"] == 0).all()
    notes = re.sub(r"\s+", " ", (out / "report" / "report.md").read_text())
    assert "the train split of mosi holds 1 sample(s)" in notes and "the test split of mosi holds 1 sample(s)" in notes
    assert "fixed_pattern: no test sample could be scored under vision" in notes
    assert "corr has no value for 12 of 14 (condition, seed) results of mosi: it is undefined for a single" in notes
    assert "the valid split of iemocap holds 1 sample(s)" in notes
    assert "the test split of iemocap holds a single class" in notes
    figures = {f.name for f in (out / "report" / "figures").iterdir()}
    assert not any(f.startswith("iemocap__") for f in figures), "a figure of UA, which has no value on iemocap"
    assert {"mosi__heatmap__acc2_non0.png", "mosi__drop__acc2_non0.png"} <= figures


def _load(name: str, path: Path) -> Dataset:
    return DATASETS.get(name)(DataOptions(path=path))


@pytest.mark.parametrize("labels", [np.float32(3e30), np.arange(40)], ids=["3e30", "ints 0..39"])
def test_labels_outside_the_sentiment_range_are_refused_for_mosi(tmp_path: Path, tiny_mosi: Dataset,
                                                                  labels: np.ndarray) -> None:
    train = tiny_mosi.train
    y = torch.as_tensor(np.resize(labels, len(train)).astype(np.float32))
    path = tmp_path / "odd.npz"
    save_npz(dataclasses.replace(tiny_mosi, train=dataclasses.replace(train, y=y),
                                 spec=dataclasses.replace(tiny_mosi.spec, label_range=None)), path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: train/labels: labels out of range") + ".*lie in"):
        _load("mosi", path)
    with pytest.raises(ValueError, match="label_range: declares"):  # a declared range wider than [-3, 3]
        lr = (-1e31, 1e31)
        save_npz(dataclasses.replace(tiny_mosi, spec=dataclasses.replace(tiny_mosi.spec, label_range=lr)), path)
        _load("mosi", path)


def test_an_undeclared_label_range_is_inferred_with_a_warning(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    minimal_npz(tmp_path / "mine.npz")
    with caplog.at_level(logging.WARNING):
        data = _load("npz", tmp_path / "mine.npz")
    assert "no label_range declared; taking the labels' own extent" in caplog.text
    assert data.spec.label_range == tuple(data.provenance["label_range_inferred"])


@pytest.mark.parametrize("dtype", [np.complex64, np.dtype("U3")], ids=["complex", "strings"])
def test_features_that_are_not_real_numbers_are_refused(tmp_path: Path, dtype) -> None:
    arrays = minimal_npz(tmp_path / "mine.npz")
    arrays["train/text"] = arrays["train/text"].astype(dtype)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'bad.npz'}: train/text: expected real-valued "
                                                   f"features")):
        _load("npz", tmp_path / "bad.npz")
