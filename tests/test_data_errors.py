"""Unsafe pickles are refused without running; missing files and every kind of bad input get a specific
one-line error naming the file and the key; the search order for data files."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fake_releases import SIZES, dialogue, dump, minimal_npz, mmsa, mult

from harness.data import DataOptions
from harness.datasets.locate import locate
from harness.registry import DATASETS


class OpensAFile:
    """Unpickling this calls builtins.open(target, "w"): it would create the file."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


class RunsAShellCommand:
    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("payload", [OpensAFile, RunsAShellCommand])
def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path: Path, payload: type) -> None:
    marker = tmp_path / "pwned"
    obj, _ = mmsa()
    obj["train"]["raw_text"] = payload(marker)  # hidden deep inside an otherwise valid file
    path = tmp_path / "unaligned_50.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(ValueError) as info:
        DATASETS.get("mosi")(DataOptions(path=path))
    message = str(info.value)
    assert str(path) in message and "refused to unpickle" in message and "mibench data convert" in message
    assert "\n" not in message
    assert not marker.exists(), "the payload ran"


def test_missing_file_names_every_place_searched_and_what_to_download(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIBENCH_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("MIBENCH_HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError) as info:
        DATASETS.get("mosi")(DataOptions(data_dir=tmp_path / "dir"))
    message = str(info.value)
    for where in (tmp_path / "dir", tmp_path / "env", tmp_path / "home" / "data"):
        assert str(where) in message
    assert "MOSI/Processed/unaligned_50.pkl" in message and "mosi_data.pkl" in message
    assert "thuiar/MMSA" in message and "CMU-MultimodalSDK" in message and "--datasets mosi=/path/to/file" in message
    monkeypatch.delenv("MIBENCH_DATA")
    with pytest.raises(FileNotFoundError, match=r"--data-dir \(not set\); \$MIBENCH_DATA \(not set\)"):
        DATASETS.get("iemocap")(DataOptions())
    with pytest.raises(FileNotFoundError, match="IEMOCAP_features_raw.pkl"):
        DATASETS.get("iemocap")(DataOptions())
    with pytest.raises(FileNotFoundError, match=r"mosi=.*nothere.pkl: no such file"):
        DATASETS.get("mosi")(DataOptions(path=tmp_path / "nothere.pkl"))


def test_search_order_data_dir_then_env_then_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    obj, _ = mult()
    dirs = {k: tmp_path / k for k in ("dir", "env", "home")}
    monkeypatch.setenv("MIBENCH_DATA", str(dirs["env"]))
    monkeypatch.setenv("MIBENCH_HOME", str(dirs["home"]))
    (dirs["home"] / "data").mkdir(parents=True)
    dump(obj, dirs["home"] / "data" / "mosi_data.pkl")
    assert locate("mosi", None, dirs["dir"]) == dirs["home"] / "data" / "mosi_data.pkl"
    (dirs["env"] / "MOSI" / "Processed").mkdir(parents=True)
    dump(mmsa()[0], dirs["env"] / "MOSI" / "Processed" / "aligned_50.pkl")
    assert locate("mosi", None, dirs["dir"]) == dirs["env"] / "MOSI" / "Processed" / "aligned_50.pkl"
    dirs["dir"].mkdir()
    dump(obj, dirs["dir"] / "mosi_data_noalign.pkl")
    assert locate("mosi", None, dirs["dir"]) == dirs["dir"] / "mosi_data_noalign.pkl"
    assert locate("mosi", dirs["env"], None).name == "aligned_50.pkl"  # NAME=FOLDER searches that folder
    data = DATASETS.get("mosi")(DataOptions(data_dir=dirs["dir"]))
    assert data.provenance["file"] == str(dirs["dir"] / "mosi_data_noalign.pkl")


def _set(obj: dict, split: str, key: str, value) -> dict:
    obj[split][key] = value
    return obj


def _without(obj: dict, split: str) -> dict:
    del obj[split]
    return obj


def _replace_split(obj: dict, split: str, value: object) -> dict:
    obj[split] = value
    return obj


def _dialogue_label(value: int) -> tuple:
    obj = list(dialogue()[0])
    vid = sorted(obj[8])[0]
    obj[2] = {**obj[2], vid: [value] + obj[2][vid][1:]}
    return tuple(obj)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_key() -> dict:
    obj = mmsa()[0]
    del obj["test"]["audio"]
    return obj


def _dialogue_audio_short() -> tuple:
    obj = list(dialogue()[0])
    obj[4] = {**obj[4], "Ses01F_impro00": obj[4]["Ses01F_impro00"][:3]}
    return tuple(obj)


BAD: dict[str, tuple[str, Callable[[], object], str]] = {
    # case: (dataset, builder of the unpickled object, expected message fragment)
    "unknown layout": ("mosi", lambda: {"features": np.zeros(3)}, "unknown layout: a dict with keys [features]"),
    "unknown layout in split": ("mosi", lambda: {"train": {"x": 1}}, "unknown layout: split 'train' has keys [x]"),
    "split missing": ("mosi", lambda: _without(mmsa()[0], "valid"),
                      "split 'valid' is missing (the file has [test, train])"),
    "split not a dict": ("mosi", lambda: _replace_split(mmsa()[0], "valid", [1, 2, 3]),
                         "split 'valid' is a list, expected a dict of arrays"),
    "train split not a dict": ("mosi", lambda: _replace_split(mult()[0], "train", np.zeros(3)),
                               "split 'train' is a ndarray, expected a dict of arrays"),
    "key missing": ("mosi", lambda: _drop_key(), "test: key 'audio' is missing"),
    "different N": ("mosi", lambda: _set(mmsa()[0], "train", "vision", np.zeros((11, 9, 4), np.float32)),
                    "train/vision: 11 samples but the labels have 12"),
    "labels out of range": ("mosi", lambda: _set(mmsa()[0], "valid", "regression_labels", np.full(6, 3.5)),
                            "valid/regression_labels: labels out of range: they span [3.5, 3.5], outside [-3, 3]"),
    "NaN labels": ("mosi", lambda: _set(mmsa()[0], "test", "regression_labels", np.full(8, np.nan)),
                   "test/regression_labels: 8 labels are NaN or infinite"),
    "lengths too long": ("mosi", lambda: _set(mmsa()[0], "train", "audio_lengths", [11] * 12),
                         "train/audio_lengths: lengths longer than the sequence: they span [11, 11] "
                         "but the features hold 10 steps"),
    "fractional lengths": ("mosi", lambda: _set(mmsa()[0], "valid", "vision_lengths", [3, 2.7, 4, 5.5, 1, 2]),
                           "valid/vision_lengths: lengths must be whole numbers >= 0, got 2.7 for sample 1 "
                           "(2 of 6 samples)"),
    "negative lengths": ("mosi", lambda: _set(mmsa()[0], "test", "audio_lengths", [3] * 7 + [-1]),
                         "test/audio_lengths: lengths must be whole numbers >= 0, got -1 for sample 7 "
                         "(1 of 8 samples)"),
    "features not 3-D": ("mosi", lambda: _set(mmsa()[0], "train", "text", np.zeros((12, 6))),
                         "train/text: expected real-valued features (N, T, D)"),
    "IEMOCAP one-vs-rest out of range": (
        "iemocap", lambda: _set(mult(emotions=True)[0], "train", "labels", np.full((12, 4, 2), 2.0)),
        "train/labels: labels out of range: IEMOCAP one-vs-rest labels must be 0 or 1"),
    "sentiment labels of wrong shape": ("mosi", lambda: _set(mult()[0], "test", "labels", np.zeros((8, 3))),
                                        "test/labels: expected sentiment scores (N,), (N, 1) or (N, 1, 1)"),
    "dialogue label out of range": ("iemocap", lambda: _dialogue_label(7),
                                    "videoLabels['Ses05M_script00']: labels out of range"),
    "dialogue utterance counts differ": ("iemocap", lambda: _dialogue_audio_short(),
                                         "videoAudio['Ses01F_impro00'] has 3 utterances but videoLabels has 4"),
    "dialogue test split missing": ("iemocap", lambda: (*dialogue()[0][:8], []), "testVid: split is missing"),
    "sentiment file as iemocap": ("iemocap", lambda: mmsa()[0], "not IEMOCAP emotion labels"),
    "emotion file as mosi": ("mosi", lambda: mult(emotions=True)[0], "not the sentiment scores 'mosi' needs"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_one_line_error_naming_file_and_key(tmp_path: Path, case: str) -> None:
    name, build, fragment = BAD[case]
    path = dump(build(), tmp_path / "data.pkl")
    with pytest.raises(ValueError) as info:
        DATASETS.get(name)(DataOptions(path=path))
    message = str(info.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message, message


@pytest.mark.parametrize(("content", "fragment"), [
    (None, "truncated or corrupt pickle"),
    (b"", "the file is empty"),
    (b"<!DOCTYPE html><html>quota exceeded</html>", "looks like an HTML/XML page"),
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "an HDF5 file"),
    (b"PK\x03\x04" + b"\0" * 64, "truncated or corrupt .npz"),
])
def test_corrupt_files(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "f.pkl"
    if content is None:
        dump(mmsa()[0], path)
        _truncate(path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        DATASETS.get("mosi")(DataOptions(path=path))
    message = str(info.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message, message


def test_bad_npz_keys(tmp_path: Path) -> None:
    from harness.datasets.real import convert

    convert(dump(mmsa()[0], tmp_path / "s.pkl"), tmp_path / "ok.npz", "mosi", DataOptions())
    arrays = dict(np.load(tmp_path / "ok.npz"))
    del arrays["valid/labels"]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad.npz: key 'valid/labels' is missing"):
        DATASETS.get("mosi")(DataOptions(path=tmp_path / "bad.npz"))
    arrays = dict(np.load(tmp_path / "ok.npz"))
    arrays["test/audio_lengths"] = arrays["test/audio_lengths"] + 100
    np.savez(tmp_path / "long.npz", **arrays)
    with pytest.raises(ValueError, match=r"long.npz: test/audio_lengths: lengths longer than the sequence"):
        DATASETS.get("mosi")(DataOptions(path=tmp_path / "long.npz"))


TRAIN = SIZES["train"]
BAD_NPZ: dict[str, tuple[dict, str]] = {
    # case: (keys changed in a minimal hand-written file, expected message fragment)
    "fractional lengths": ({"train/audio_lengths": np.full(TRAIN, 2.5)},
                           f"train/audio_lengths: lengths must be whole numbers >= 0, got 2.5 for sample 0 "
                           f"({TRAIN} of {TRAIN} samples)"),
    "negative lengths": ({"test/text_lengths": -np.ones(SIZES["test"], dtype=np.int64)},
                         "test/text_lengths: lengths must be whole numbers >= 0, got -1"),
    "reserved modality name": ({"modalities": np.array(["text", "labels"])}, "modalities: expected one or more"),
    "modality name with +": ({"modalities": np.array(["text", "a+b"])}, "got ['text', 'a+b']"),
    "duplicate modalities": ({"modalities": np.array(["text", "text"])}, "distinct names"),
    "present of the wrong width": ({"valid/present": np.ones((SIZES["valid"], 2), dtype=bool)},
                                   "valid/present: expected bool (6, 3) with columns ['text', 'audio', 'vision']"),
    "classification without classes": ({"task": np.array("classification"), "classes": None},
                                       "key 'classes' is missing"),
    "a single class": ({"task": np.array("classification"), "classes": np.array(["only"])},
                       "classes: a classification file needs at least 2 class names"),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_bad_hand_written_npz(tmp_path: Path, case: str) -> None:
    changes, fragment = BAD_NPZ[case]
    path = tmp_path / "mine.npz"
    minimal_npz(path, changes=changes)
    with pytest.raises(ValueError) as info:
        DATASETS.get("npz")(DataOptions(path=path))
    message = str(info.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message, message


def test_invalid_options() -> None:
    with pytest.raises(ValueError, match="iemocap_classes must be one of"):
        DataOptions(iemocap_classes="5")
    with pytest.raises(ValueError, match="nan_value must be a finite number"):
        DataOptions(nan_value=float("nan"))
