"""``mibench data info/convert`` and ``mibench run`` on real-layout files (tiny, built here)."""

from __future__ import annotations

import collections
import json
import re
import shlex
from pathlib import Path

import pytest
from fake_releases import LAYOUTS, SIZES, dialogue, dump, minimal_npz, mmsa, mult, release_file
from typer.testing import CliRunner

from harness.cli import app
from harness.data import DataOptions
from harness.registry import DATASETS
from harness.store import RunStore

cli = CliRunner()
PATTERNS = {"full", "text+audio", "text+vision", "audio+vision", "text", "audio", "vision"}
RUN = ["--methods", "vanilla_fusion", "--seeds", "1", "--set", "epochs=1", "--device", "cpu", "--protocols",
       "fixed_pattern"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_run_trains_and_evaluates_on_every_layout(tmp_path: Path, layout: str) -> None:
    name, path = release_file(layout, tmp_path)
    out = tmp_path / "run"
    extra = ["--pool", "--standardize"] if layout == "mmsa" else []
    res = cli.invoke(app, ["run", "--datasets", f"{name}={path}", *RUN, "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    store = RunStore.read(out)
    records = store.records()
    assert set(records.protocol) == {"fixed_pattern"} and set(records.dataset) == {name}
    assert set(records.condition) == PATTERNS
    assert records.groupby("condition").metric.nunique().min() >= 4
    meta = store.meta["datasets"][name]
    prov = meta["provenance"]
    assert prov["file"] == str(path.resolve()) and set(records.n) == {meta["sizes"]["test"]}
    # the planted -inf/NaN values (mult-iemocap's sit in rows the 4-class view drops; the .npz is already clean)
    assert prov["nonfinite_replaced"]["total"] == {"mmsa": 6, "mmsa-aligned": 6, "mult": 3}.get(layout, 0)
    if layout == "npz":
        assert prov["format"] == "mibench-npz" and prov["converted_from"]["format"] == "mmsa"
    if extra:
        assert store.meta["config"]["pool"] and store.meta["config"]["standardize"]
        assert meta["spec"]["seq_lens"] == [1, 1, 1] and prov["preprocessing"]["standardize"]["audio"]["features"] == 5
    else:  # standardised by default, with the training split's statistics recorded
        assert prov["preprocessing"]["pool"] is False and store.meta["config"]["standardize"]
        assert prov["preprocessing"]["standardize"]["statistics"].startswith("train split")


def test_run_on_an_npz_with_other_modality_names(tmp_path: Path) -> None:
    minimal_npz(tmp_path / "two.npz", modalities=("language", "acoustic"), task="classification")
    res = cli.invoke(app, ["run", "--datasets", f"npz={tmp_path / 'two.npz'}", *RUN, "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    store = RunStore.read(tmp_path / "run")
    assert set(store.records().condition) == {"full", "language", "acoustic"}
    assert store.meta["datasets"]["npz"]["spec"]["modalities"] == ["language", "acoustic"]


def test_bad_file_stops_the_run_before_training(tmp_path: Path) -> None:
    obj, _ = mmsa()
    obj["test"]["regression_labels"][0] = 4.0
    path = dump(obj, tmp_path / "bad.pkl")
    res = cli.invoke(app, ["run", "--datasets", f"mosi={path}", "--methods", "vanilla_fusion", "--seeds", "1",
                           "--device", "cpu", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "error:" in res.output and "test/regression_labels: labels out of range" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "run").exists()


def test_run_rejects_an_unknown_label_view(tmp_path: Path) -> None:
    res = cli.invoke(app, ["run", "--datasets", "iemocap", "--iemocap-classes", "7", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "iemocap_classes must be one of" in res.output


def test_info_sentiment(tmp_path: Path) -> None:
    obj, truth = mmsa()
    path = dump(obj, tmp_path / "unaligned_50.pkl")
    res = cli.invoke(app, ["data", "info", f"mosi={path}"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "format: mmsa" in out and "task: regression" in out
    assert f"NaN/inf values replaced with 0.0: {truth['nonfinite']}" in out and "-inf 1" in out
    assert "exact zeros" in out and "non-zero padded steps zeroed" in out
    res = cli.invoke(app, ["data", "info", f"mosi={path}", "--json"])
    summary = json.loads(res.output)
    assert {s: v["n"] for s, v in summary["splits"].items()} == SIZES
    assert summary["splits"]["train"]["modalities"]["audio"]["dim"] == 5
    assert summary["splits"]["train"]["modalities"]["audio"]["steps"] == 10
    zeros = float((truth["labels"]["train"] == 0).mean())
    assert zeros >= 2 / 12 and summary["splits"]["train"]["labels"]["zero_share"] == pytest.approx(zeros)


def test_info_iemocap_class_counts(tmp_path: Path) -> None:
    path = dump(dialogue()[0], tmp_path / "IEMOCAP_features.pkl")
    res = cli.invoke(app, ["data", "info", f"iemocap={path}", "--iemocap-classes", "6"])
    assert res.exit_code == 0, res.output
    assert "format: iemocap-dialogue" in res.output and "frustrated:" in res.output and "valid_dialogues" in res.output


def test_info_refuses_an_unsafe_pickle(tmp_path: Path) -> None:
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, ("import os",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": Evil()}))
    res = cli.invoke(app, ["data", "info", f"mosi={path}"])
    assert res.exit_code == 2 and "refused to unpickle" in res.output and "builtins.exec" in res.output


def _suggested(message: str) -> list[str]:
    """The arguments of the 'mibench data convert ...' command an error message suggests."""
    found = re.search(r"'(mibench data convert [^']+)'", message)
    assert found, message
    return shlex.split(found.group(1))[1:]


def test_convert_needs_the_dataset_for_sentiment_then_info_finds_the_npz(tmp_path: Path) -> None:
    src = dump(mult()[0], tmp_path / "mosi_data.pkl")
    dst = tmp_path / "mosi.npz"
    res = cli.invoke(app, ["data", "convert", str(src), str(dst)])
    assert res.exit_code == 2 and "say which dataset it is: --dataset mosi or mosei" in res.output
    res = cli.invoke(app, _suggested(res.output))  # the command the error suggests works as written
    assert res.exit_code == 0, res.output
    assert "Wrote" in res.output and "train 12, valid 6, test 8" in res.output
    res = cli.invoke(app, ["data", "convert", f"mosi={src}", str(dst)])
    assert res.exit_code == 2 and "exists; pass --force" in res.output
    res = cli.invoke(app, ["data", "convert", f"mosi={src}", str(tmp_path / "x.pkl")])
    assert res.exit_code == 2 and "must end in .npz" in res.output
    res = cli.invoke(app, ["data", "info", "mosi", "--data-dir", str(tmp_path)])  # mosi.npz is found first
    assert res.exit_code == 0 and "format: mibench-npz" in res.output, res.output
    iemo = dump(dialogue()[0], tmp_path / "IEMOCAP_features_raw.pkl")
    res = cli.invoke(app, ["data", "convert", str(iemo), str(tmp_path / "iemocap.npz"), "--iemocap-classes", "6"])
    assert res.exit_code == 0 and "iemocap (iemocap-dialogue layout)" in res.output, res.output


def test_the_refusal_suggests_a_convert_command_that_works_as_written(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    obj, _ = mmsa()
    obj["train"]["raw_text"] = collections.deque(["a harmless class the restricted unpickler still refuses"])
    path = dump(obj, tmp_path / "unaligned_50.pkl")
    with pytest.raises(ValueError, match="refused to unpickle: it asks for collections.deque") as info:
        DATASETS.get("mosi")(DataOptions(path=path))
    args = _suggested(str(info.value))
    assert args == ["data", "convert", f"mosi={path}", "mosi.npz", "--trust-pickle"]
    monkeypatch.chdir(tmp_path)
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert DATASETS.get("mosi")(DataOptions(path=tmp_path / "mosi.npz")).provenance["format"] == "mibench-npz"
    res = cli.invoke(app, ["data", "convert", str(path), "x.npz"])  # no dataset named: the hint says how to name it
    assert res.exit_code == 2 and "'mibench data convert NAME=" in res.output
    assert "(NAME: mosi, mosei or iemocap, whichever the file holds)" in res.output
