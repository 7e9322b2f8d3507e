"""End-to-end runner tests on tiny data: records, resume, crash safety, failing cells, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import runner
from harness.config import RunConfig, build_run_config
from harness.registry import DATASETS, METHODS, UnknownNameError
from harness.store import RunExistsError, RunStore

FAST = {"*": {"epochs": 2, "batch_size": 32}}
KEY = ["dataset", "method", "seed", "protocol", "condition", "metric"]


def config(out: Path, **kw) -> RunConfig:
    base = dict(methods=("vanilla_fusion",), datasets=("synth-mosi", "synth-iemocap"), seeds=(0, 1),
                preset="tiny", out=str(out), device="cpu", method_options=FAST, workers=1, protocols=("fixed_pattern",))
    return RunConfig(**{**base, **kw})


def test_run_writes_one_record_per_cell_condition_metric(tmp_path: Path) -> None:
    summary = runner.run(config(tmp_path / "r"))
    assert len(summary.done) == 4 and not summary.failed
    store = RunStore.read(tmp_path / "r")
    rec = store.records()
    assert not rec.duplicated(KEY).any()
    # 7 conditions (full + 6 patterns); 8 regression metrics, 4 classification metrics; 2 seeds
    assert len(rec[rec.dataset == "synth-mosi"]) == 2 * 7 * 8
    assert len(rec[rec.dataset == "synth-iemocap"]) == 2 * 7 * 4
    assert rec.value.map(type).eq(float).all()
    assert set(rec[rec.dataset == "synth-mosi"].condition) == {
        "full", "text+audio", "text+vision", "audio+vision", "text", "audio", "vision"}
    meta = store.meta
    assert meta["versions"]["torch"] == torch.__version__
    assert {"commit", "dirty"} <= set(meta["git"])
    assert all(c["status"] == "done" for c in meta["cells"].values())
    cell = meta["cells"]["synth-mosi__vanilla_fusion__seed0"]
    assert cell["fit"]["select_metric"] == "mae" and "cell_seed" in cell
    preds = store.predictions("synth-mosi__vanilla_fusion__seed0")
    assert preds["pred"].shape == (7, 64) and preds["target"].shape == (64,)
    assert list(preds["conditions"])[0] == "fixed_pattern/full"


def test_predictions_reproduce_the_stored_metrics(tmp_path: Path) -> None:
    from harness.registry import METRICS

    runner.run(config(tmp_path / "r", datasets=("synth-mosi",), seeds=(0,)))
    store = RunStore.read(tmp_path / "r")
    rec = store.records().set_index(["condition", "metric"]).value
    preds = store.predictions("synth-mosi__vanilla_fusion__seed0")
    for k, cond in enumerate(preds["conditions"]):
        value = METRICS.get("acc2_non0")(preds["pred"][k], preds["target"])
        assert value == pytest.approx(rec[(cond.split("/", 1)[1], "acc2_non0")])


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    runner.run(config(tmp_path / "a", datasets=("synth-mosi",), seeds=(0,)))
    runner.run(config(tmp_path / "b", datasets=("synth-mosi",), seeds=(0,)))
    a, b = (RunStore.read(tmp_path / x).records() for x in "ab")
    assert a.value.tolist() == b.value.tolist()


def test_resume_skips_finished_and_redoes_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path / "r")
    real_mark = RunStore.mark
    calls = {"n": 0}

    def crash_on_second_done(self, cell, status, **info):
        if status == "done":
            calls["n"] += 1
            if calls["n"] == 2:  # records of this cell are appended, but it is never marked done
                raise KeyboardInterrupt
        return real_mark(self, cell, status, **info)

    monkeypatch.setattr(RunStore, "mark", crash_on_second_done)
    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg)
    monkeypatch.setattr(RunStore, "mark", real_mark)
    summary = runner.run(cfg)
    assert summary.skipped == ["synth-mosi__vanilla_fusion__seed0"]
    assert len(summary.done) == 3
    rec = RunStore.read(tmp_path / "r").records()
    assert not rec.duplicated(KEY).any()
    assert rec.groupby(["dataset", "seed"]).size().to_dict() == {
        ("synth-iemocap", 0): 28, ("synth-iemocap", 1): 28, ("synth-mosi", 0): 56, ("synth-mosi", 1): 56}


def test_partial_trailing_line_is_dropped_on_resume(tmp_path: Path) -> None:
    cfg = config(tmp_path / "r", datasets=("synth-mosi",), seeds=(0,))
    runner.run(cfg)
    store = RunStore.read(tmp_path / "r")
    with open(store.records_path, "a") as fh:
        fh.write('{"cell": "synth-mosi__vanilla_fusion__seed0", "value": 1')  # a torn write
    runner.run(cfg)
    assert len(RunStore.read(tmp_path / "r").records()) == 56


def _children(pid: int) -> list[int]:
    """Pids of ``pid``'s child processes (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_process_resumes_with_exactly_one_record_each(tmp_path: Path, workers: int) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "harness", "run", "--methods", "vanilla_fusion", "--datasets", "synth-mosi",
           "--seeds", "3", "--preset", "tiny", "--out", str(out), "--device", "cpu", "--set", "epochs=40",
           "--workers", str(workers), "--protocols", "fixed_pattern"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, cells = time.time() + 120, {}
    while time.time() < deadline and proc.poll() is None:  # kill once one cell is done and others are not
        run_json = out / "run.json"
        if run_json.exists():
            cells = json.loads(run_json.read_text())["cells"]
            if 0 < sum(c["status"] == "done" for c in cells.values()) < 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    kids = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cells = json.loads((out / "run.json").read_text())["cells"]
    assert any(c["status"] == "done" for c in cells.values())
    assert any(c["status"] != "done" for c in cells.values())
    # worker processes must not train on as orphans once the runner is gone
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.2)
    assert not any(_alive(k) for k in kids), "worker processes outlived the killed runner"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rec = RunStore.read(out).records()
    assert not rec.duplicated(KEY).any()
    assert len(rec) == 3 * 7 * 8


def test_readers_never_see_records_of_unfinished_cells(tmp_path: Path) -> None:
    cfg = config(tmp_path / "r", datasets=("synth-mosi",), seeds=(0,))
    runner.run(cfg)
    store = RunStore.read(tmp_path / "r")
    lines = store.records_path.read_text()
    # as a run killed mid-append leaves it: another cell's complete records, then a torn line
    with open(store.records_path, "a") as fh:
        fh.write(lines.replace("seed0", "seed1").replace('"seed": 0', '"seed": 1'))
        fh.write('{"cell": "synth-mosi__vanilla_fusion__seed1", "value": 1')
    assert len(RunStore.read(tmp_path / "r").records()) == 56


def test_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    import plugin_method

    class NaNLoss(plugin_method.MeanOfModalities):
        def training_loss(self, batch, generator):
            return super().training_loss(batch, generator) * float("nan")

    METHODS.add("test_nan_loss", NaNLoss)
    try:
        summary = runner.run(config(tmp_path / "r", methods=("test_nan_loss", "vanilla_fusion"),
                                    datasets=("synth-mosi",), seeds=(0,)))
    finally:
        METHODS.remove("test_nan_loss")
    assert list(summary.failed) == ["synth-mosi__test_nan_loss__seed0"]
    assert "non-finite training loss" in summary.failed["synth-mosi__test_nan_loss__seed0"]
    store = RunStore.read(tmp_path / "r")
    assert store.meta["cells"]["synth-mosi__test_nan_loss__seed0"]["status"] == "failed"
    assert set(store.records().method) == {"vanilla_fusion"}


def test_different_config_in_same_dir_is_refused(tmp_path: Path) -> None:
    runner.run(config(tmp_path / "r", datasets=("synth-mosi",), seeds=(0,)))
    with pytest.raises(RunExistsError, match="seeds: stored \\[0\\], now \\[0, 1\\]"):
        runner.run(config(tmp_path / "r", datasets=("synth-mosi",), seeds=(0, 1)))
    assert len(RunStore.read(tmp_path / "r").records()) == 56  # nothing lost
    runner.run(config(tmp_path / "r", datasets=("synth-mosi",), seeds=(0, 1)), overwrite=True)
    assert len(RunStore.read(tmp_path / "r").records()) == 112


def test_plugin_method_runs_through_the_runner(tmp_path: Path) -> None:
    summary = runner.run(config(tmp_path / "r", methods=("test_plugin_mean",), datasets=("synth-iemocap",),
                                seeds=(0,), plugins=("plugin_method",)))
    assert summary.done == ["synth-iemocap__test_plugin_mean__seed0"]


@pytest.mark.parametrize(("kw", "message"), [
    ({"methods": ("mmim_fusion",)}, "Unknown method 'mmim_fusion'"),
    ({"datasets": ("synth-mosei",)}, "Did you mean 'synth-mosi'"),
    ({"protocols": ("fixed_patern",)}, "Did you mean 'fixed_pattern'"),
    ({"method_options": {"vanilla_fusion": {"epochz": 1}}}, "Unknown key\\(s\\) \\['epochz'\\]"),
    ({"method_options": {"vanilla_fusion": {"dropout": "1.5"}}}, "dropout = 1.5 is invalid; valid: in \\[0, 1\\)"),
    ({"method_options": {"vanilla_fusion": {"epochs": "many"}}}, "vanilla_fusion.epochs expects int"),
])
def test_bad_input_fails_before_training(tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises((ValueError, UnknownNameError), match=message):
        runner.prepare(config(tmp_path / "r", **kw))
    assert not (tmp_path / "r").exists()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="non-negative integers"):
        RunConfig(seeds=(-1,))
    with pytest.raises(ValueError, match="distinct"):
        RunConfig(seeds=(1, 1))
    with pytest.raises(ValueError, match="--seeds must be at least 1"):
        build_run_config(seeds="0")
    with pytest.raises(ValueError, match="the list '0,' has an empty item"):
        build_run_config(seeds="0,")
    with pytest.raises(ValueError, match="more than 1000 seeds"):
        build_run_config(seeds="99999999999999999999")
    with pytest.raises(ValueError, match="below 2\\*\\*63"):
        build_run_config(seeds="1,99999999999999999999")
    with pytest.raises(ValueError, match="device must be"):
        RunConfig(device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error path")
def test_cuda_without_gpu_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        runner.prepare(config(tmp_path / "r", device="cuda"))


def test_config_file_precedence(tmp_path: Path) -> None:
    f = tmp_path / "run.toml"
    f.write_text('methods = ["vanilla_fusion"]\nseeds = [4, 5]\npreset = "tiny"\n'
                 '[method_options."*"]\nepochs = 3\n[method_options.vanilla_fusion]\nhidden = 16\n')
    cfg = build_run_config(f, seeds="2", method_options={"vanilla_fusion": {"hidden": "8"}})
    assert cfg.seeds == (0, 1) and cfg.preset == "tiny" and cfg.methods == ("vanilla_fusion",)
    assert cfg.method_options == {"*": {"epochs": 3}, "vanilla_fusion": {"hidden": "8"}}
    f.write_text("sedes = 3\n")
    with pytest.raises(ValueError, match="Unknown key\\(s\\) \\['sedes'\\]"):
        build_run_config(f)


def test_parallel_workers_give_the_sequential_results(tmp_path: Path) -> None:
    seq = runner.run(config(tmp_path / "seq", datasets=("synth-mosi",)))
    par = runner.run(config(tmp_path / "par", datasets=("synth-mosi",), workers=2))
    assert sorted(par.done) == sorted(seq.done) and not par.failed
    a, b = (RunStore.read(tmp_path / x).records().sort_values(KEY).reset_index(drop=True) for x in ("seq", "par"))
    assert a[KEY + ["value"]].equals(b[KEY + ["value"]])
    assert RunStore.read(tmp_path / "par").meta["identity"] == RunStore.read(tmp_path / "seq").meta["identity"]


def test_a_run_made_before_an_option_existed_still_resumes(tmp_path: Path) -> None:
    cfg = config(tmp_path / "r", datasets=("synth-mosi",), seeds=(0,))
    runner.run(cfg)
    store = RunStore.read(tmp_path / "r")
    del store.meta["identity"]["select"]  # as written by a version without that option
    store.save_meta()
    assert runner.run(cfg).skipped == ["synth-mosi__vanilla_fusion__seed0"]
    store = RunStore.read(tmp_path / "r")
    store.meta["identity"]["select"] = "all"  # but a stored non-default value is still a different run
    store.save_meta()
    with pytest.raises(RunExistsError, match="select: stored 'all', now 'complete'"):
        runner.run(cfg)


def test_equivalent_options_are_the_same_run(tmp_path: Path) -> None:
    base = dict(datasets=("synth-mosi",), seeds=(0,))
    runner.run(config(tmp_path / "r", **base, method_options={"*": {"epochs": "2", "batch_size": 32}}))
    for options in ({"vanilla_fusion": {"epochs": 2, "batch_size": "32"}},
                    {"*": {"epochs": 2, "batch_size": 32, "hidden": 64}}):  # hidden = 64 is the default
        assert runner.run(config(tmp_path / "r", **{**base, "method_options": options})).skipped == [
            "synth-mosi__vanilla_fusion__seed0"]
    with pytest.raises(RunExistsError, match="method_options: stored"):
        runner.run(config(tmp_path / "r", **{**base, "method_options": {"*": {"epochs": 3, "batch_size": 32}}}))


def test_changed_data_refuses_to_resume_and_provenance_is_kept(tmp_path: Path, tiny_mosi) -> None:
    import dataclasses

    from harness.datasets.npz import save_npz

    path = tmp_path / "mosi.npz"
    save_npz(tiny_mosi, path)
    cfg = config(tmp_path / "r", datasets=(f"mosi={path}",), seeds=(0,))
    runner.run(cfg)
    first = RunStore.read(tmp_path / "r").meta
    assert runner.run(cfg).skipped == ["mosi__vanilla_fusion__seed0"]
    meta = RunStore.read(tmp_path / "r").meta
    assert meta["datasets"] == first["datasets"] and meta["git"] == first["git"]
    assert len(meta["resumes"]) == 1 and {"at", "git", "versions"} <= set(meta["resumes"][0])
    assert meta["cells"]["mosi__vanilla_fusion__seed0"]["git"] == first["git"]
    test = dataclasses.replace(tiny_mosi.test, y=(tiny_mosi.test.y * 0.5))
    save_npz(dataclasses.replace(tiny_mosi, test=test), path)  # same file name, other numbers
    with pytest.raises(RunExistsError, match="The data differ from the data the run started with"):
        runner.run(cfg)
    assert len(RunStore.read(tmp_path / "r").records()) == 56  # nothing lost


@pytest.mark.parametrize(("kw", "metric", "message"), [
    ({}, "acc8", "Unknown metric 'acc8'. Did you mean 'acc7'"),
    ({}, "wa", "--metric wa is a classification metric but this run's datasets are regression"),
    ({"select_metric": "ua"}, None,
     "--select-metric ua is a classification metric but the dataset task is regression"),
    ({"datasets": ("synth-mosi", "synth-mosi")}, None, "--datasets names synth-mosi more than once"),
])
def test_metric_and_dataset_errors_come_before_training(tmp_path: Path, kw: dict, metric: str | None,
                                                         message: str) -> None:
    cfg = config(tmp_path / "r", **{"datasets": ("synth-mosi",), "seeds": (0,), **kw})
    with pytest.raises((ValueError, UnknownNameError), match=re.escape(message)):
        runner.run(cfg, table_metric=metric)
    assert not (tmp_path / "r").exists()


def test_parallel_progress_names_the_running_cells(tmp_path: Path) -> None:
    class Record:
        def __init__(self) -> None:
            self.running_seen: list[list[str]] = []
            self.finished_cells: list[str] = []

            self.running: set[str] = set()

        def start(self, total: int, done: int, out: Path, todo: list) -> None: ...
        def started(self, cell) -> None:
            self.running.add(cell.id)
            self.running_seen.append(sorted(self.running))
        def epoch(self, cell, epoch: int, total: int) -> None:
            assert cell.id in self.running
        def finished(self, cell, status: str, seconds: float) -> None:
            self.running.discard(cell.id)
            self.finished_cells.append(cell.id)

    progress = Record()
    runner.run(config(tmp_path / "r", datasets=("synth-mosi",), seeds=(0, 1, 2), workers=2,
                      method_options={"*": {"epochs": 15, "batch_size": 32}}), progress)
    named = {c for seen in progress.running_seen for c in seen}
    assert named and named <= {f"synth-mosi__vanilla_fusion__seed{s}" for s in range(3)}
    assert sorted(progress.finished_cells) == sorted(named | set(progress.finished_cells))


def test_a_method_registered_inside_a_function_runs_sequentially(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    import plugin_method

    METHODS.add("test_local_mean", type("LocalMean", (plugin_method.MeanOfModalities,), {}))
    try:
        summary = runner.run(config(tmp_path / "r", methods=("test_local_mean",), datasets=("synth-mosi",),
                                    seeds=(0, 1), workers=2))
    finally:
        METHODS.remove("test_local_mean")
    assert len(summary.done) == 2 and not summary.failed
    assert "running sequentially" in caplog.text


def test_globs_leave_the_held_out_validation_family_out(tmp_path: Path) -> None:
    plan = runner.prepare(config(tmp_path / "r", protocols=("*",)))
    names = [p.name for p in plan.protocols]
    assert "fixed_pattern" in names and "validation" not in names
    with pytest.raises(ValueError, match="validation"):
        runner.run(config(tmp_path / "r", protocols=("validation",), datasets=("synth-mosi",), seeds=(0,)))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("options", "message"), [
    ({"epochs": True}, "vanilla_fusion.epochs expects int, got True"),
    ({"lr": True}, "vanilla_fusion.lr expects float, got True"),
])
def test_toml_values_of_the_wrong_kind_are_refused(options: dict, message: str) -> None:
    from harness.config import method_config

    with pytest.raises(ValueError, match=re.escape(message)):
        method_config("vanilla_fusion", {"vanilla_fusion": options})


def test_worker_processes_share_the_drivers_data_instead_of_loading_it(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import plugin_counting_dataset

    loads = tmp_path / "loads"
    monkeypatch.setenv("MIBENCH_TEST_LOADS", str(loads))
    try:
        summary = runner.run(config(tmp_path / "r", datasets=(plugin_counting_dataset.NAME,), seeds=(0, 1, 2),
                                    workers=2, plugins=("plugin_counting_dataset",)))
    finally:
        DATASETS.remove(plugin_counting_dataset.NAME)
    assert len(summary.done) == 3
    assert loads.read_text().split() == [str(os.getpid())], "loaded once, by the driver"


def test_a_late_worker_event_never_demotes_a_stored_cell(tmp_path: Path) -> None:
    """Worker events travel on a queue and results on a pipe: a cell's ``started`` can arrive after its result was
    stored. The driver must keep the cell done (it used to mark it running, so readers dropped its records)."""
    from harness.plan import Cell
    from harness.runner import Driver, Summary
    from harness.work import CellResult

    store = RunStore.open(tmp_path / "r", {"x": 1}, {"git": {}})
    cell = Cell("d", "m", 0)
    store.mark_many([cell.id], "queued")
    driver = Driver(store, Summary(tmp_path / "r", [], {}, []), None, {})
    driver.on_result(CellResult(cell, [{"metric": "mae", "value": 1.0}], {"pred": np.zeros(2)}, {}))
    driver.started(cell)
    driver.epoch(cell, 1, 2)
    assert RunStore.read(tmp_path / "r").cell_status(cell.id) == "done"
