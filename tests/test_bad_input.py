"""Every public entry point fed malformed values: exit status 2 (1 for failed cells), one line that says what was
wrong and where, no traceback, and nothing already written changed.

Read-only and full filesystems are real where the system allows mounts (a read-only bind mount, a small filled
tmpfs; tests run as root here, and root ignores permission bits) and monkeypatched ``os`` calls raising EROFS or
ENOSPC elsewhere (``tests/faults.py``); each test records which in its ``fault`` property."""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from faults import METHODS, full_disk, read_only
from typer.testing import CliRunner

from harness.cli import app
from harness.data import Dataset
from harness.datasets.npz import save_npz
from harness.store import RunStore

cli = CliRunner()
RUN = ["run", "--methods", "vanilla_fusion", "--datasets", "synth-mosi", "--seeds", "2", "--preset", "tiny",
       "--device", "cpu", "--set", "epochs=1", "--protocols", "fixed_pattern", "--executor", "sequential"]


def one_line_error(res, *needles: str, code: int = 2) -> str:
    """The single error line of a failed command (asserting the exit code, no traceback, every needle in it)."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = [ln for ln in res.output.splitlines() if ln.lower().startswith("error")]
    assert len(lines) == 1, res.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def done_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bad") / "run"
    res = cli.invoke(app, [*RUN, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def results(run: Path) -> tuple:
    """What a run has stored as results: records, predictions, and the entries of its done cells."""
    cells = json.loads((run / "run.json").read_text())["cells"]
    done = {c: e for c, e in cells.items() if e["status"] == "done"}
    return snapshot(run / "predictions"), (run / "records.jsonl").read_bytes(), done


def copy_of(run: Path, where: Path) -> Path:
    shutil.copytree(run, where)
    return where


# -- config files ---------------------------------------------------------------------------------------------
TOML = [
    ("methods = 5", "methods must be a list of strings or a comma-separated string, got 5"),
    ("method_options = 3", "method_options must be a table of options per method"),
    ("[method_options]\nvanilla_fusion = 3", 'method_options."vanilla_fusion" must be a table of options'),
    ('[method_options]\n"*" = "epochs=1"', "method_options.\"*\" must be a table of options, e.g. "
                                           "[method_options.\"*\"] epochs = 1, got 'epochs=1'"),
    ('[method_options."*"]\nepochs = {a = 1}', 'method_options."*".epochs must be a string, number'),
    ("datasets = [1, 2]", "datasets must be a list of strings"),
    ("device = 0", "device must be a string, got 0"),
    ("out = 7", "out must be a string, got 7"),
    ("data_dir = [1]", "data_dir must be a string, got [1]"),
    ('protocols = [["a"]]', "protocols must be a list of strings"),
    ("seeds = true", "seeds must be a list of integers or a seed count, got True"),
    ("threads = 0", "threads must be a positive integer, got 0"),
    ("threads = 1.5", "threads must be an integer, got 1.5"),
    ('workers = "two"', "workers must be an integer"),
    ("pool = 1", "pool must be true or false, got 1"),
    ('nan_value = "x"', "nan_value must be a number"),
    ("gpus_per_task = -1", "gpus_per_task must be a number in [0, 64]"),
    ("max_retries = -1", "max_retries must be >= 0"),
    ('ray_data = "disk"', "ray_data must be store"),
    ('load_limit = "lots"', "load_limit must be a size such as 64G"),
    ("sedes = 3", "Unknown key(s) ['sedes']"),
    ("methods = [", "is not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), TOML, ids=[t for t, _ in TOML])
def test_bad_config_file_values(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "run.toml"
    config.write_text(text + "\n")
    res = cli.invoke(app, [*RUN, "--config", str(config), "--out", str(tmp_path / "r")])
    one_line_error(res, f"Config file {config}" if "Unknown key" not in message else str(config), message)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind", ["directory", "missing", "not UTF-8"])
def test_config_paths_that_are_no_toml_text(tmp_path: Path, kind: str) -> None:
    config = {"directory": tmp_path, "missing": tmp_path / "none.toml", "not UTF-8": tmp_path / "latin1.toml"}[kind]
    if kind == "not UTF-8":
        config.write_bytes('methods = ["vanilla_fusion"]  # café\n'.encode("latin-1"))
    message = {"directory": "is a directory, not a TOML file", "missing": "does not exist",
               "not UTF-8": "is not UTF-8 text (byte 0xe9"}[kind]
    one_line_error(cli.invoke(app, [*RUN, "--config", str(config), "--out", str(tmp_path / "r")]),
                   f"Config file {config}", message)
    assert not (tmp_path / "r").exists()


# -- command-line options ---------------------------------------------------------------------------------------
OPTIONS = [
    (["--seeds", "abc"], "--seeds must be a count"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--workers", "-1"], "workers must be >= 0"),
    (["--workers", "x"], "Invalid value for '--workers'"),
    (["--threads", "0"], "threads must be a positive integer"),
    (["--executor", "spark"], "--executor 'spark' is unknown; valid: auto, sequential, process, stacked, ray"),
    (["--device", "tpu"], "device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["--preset", "huge"], "Unknown preset 'huge'"),
    (["--methods", "vanila_fusion"], "Did you mean 'vanilla_fusion'"),
    (["--datasets", "synth-mosei"], "Did you mean 'synth-mosi'"),
    (["--protocols", "fixed_patern"], "Did you mean 'fixed_pattern'"),
    (["--metric", "acc8"], "Unknown metric 'acc8'"),
    (["--iemocap-classes", "7"], "iemocap_classes must be one of"),
    (["--nan-value", "inf"], "nan_value must be a finite number"),
    (["--nan-value", "abc"], "Invalid value for '--nan-value'"),
    (["--plugin", "no.such.module"], "no.such.module"),
    (["--set", "epochs"], "--set expects KEY=VALUE or METHOD.KEY=VALUE, got 'epochs'"),
    (["--set", "nosuch=1"], "Unknown key(s) ['nosuch']"),
    (["--set", "vanilla_fusion.hidden=abc"], "vanilla_fusion.hidden expects int, got 'abc'"),
    (["--set", "vanilla_fusion.dropout=2"], "dropout = 2.0 is invalid; valid: in [0, 1)"),
    (["--set", "epochs=0"], "epochs = 0 is invalid"),
    (["--set", "mmin.hidden=8"], "Options given for method 'mmin', which is not in this run's methods"),
    (["--address", "auto"], "--address only apply to --executor ray"),
    (["--gpus-per-task", "-1", "--executor", "ray"], "gpus_per_task must be a number in [0, 64]"),
    (["--max-retries", "-2"], "max_retries must be >= 0"),
    (["--ray-data", "disk"], "ray_data must be store"),
    (["--load-limit", "lots"], "load_limit must be a size such as 64G"),
    (["--device", "cuda", "--executor", "ray"], "needs --gpus-per-task > 0"),
    (["--executor", "ray", "--address", "127.0.0.1:1"], "--address 127.0.0.1:1: nothing answers at 127.0.0.1:1"),
    (["--executor", "ray", "--address", "headnode"], "expected auto or HOST:PORT, got 'headnode'"),
]


@pytest.mark.parametrize(("args", "message"), OPTIONS, ids=[" ".join(a) for a, _ in OPTIONS])
def test_bad_run_options(tmp_path: Path, args: list[str], message: str) -> None:
    res = cli.invoke(app, [*RUN, "--out", str(tmp_path / "r"), *args])
    one_line_error(res, message)
    assert not (tmp_path / "r").exists()


def test_address_auto_without_a_cluster_is_refused_before_the_run_directory(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    from harness.executors import resolve

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if resolve("auto")[1] is None:
        pytest.skip("a Ray cluster is running on this machine, so --address auto has one to attach to")
    res = cli.invoke(app, [*RUN, "--out", str(tmp_path / "r"), "--executor", "ray", "--address", "auto"])
    one_line_error(res, "--address auto: no running Ray cluster was found on this machine and RAY_ADDRESS is not set")
    assert not (tmp_path / "r").exists()


def test_out_that_is_a_file_or_below_one(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("mine")
    one_line_error(cli.invoke(app, [*RUN, "--out", str(f)]), f"{f} is a file, not a run directory")
    one_line_error(cli.invoke(app, [*RUN, "--out", str(f / "sub")]), str(f / "sub"),
                   "cannot create the run directory: Not a directory")
    assert f.read_text() == "mine"


def test_a_failing_cell_exits_1_and_the_sweep_goes_on(tmp_path: Path) -> None:
    import plugin_method

    from harness.registry import METHODS

    class NaNLoss(plugin_method.MeanOfModalities):
        def training_loss(self, batch, generator):
            return super().training_loss(batch, generator) * float("nan")

    METHODS.add("test_bad_input_nan", NaNLoss)  # registered for this test only (``all`` elsewhere must not see it)
    try:
        res = cli.invoke(app, [*RUN, "--methods", "test_bad_input_nan,vanilla_fusion", "--out", str(tmp_path / "r")])
    finally:
        METHODS.remove("test_bad_input_nan")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "synth-mosi__test_bad_input_nan__seed0: NonFiniteLossError" in res.output
    assert set(RunStore.read(tmp_path / "r").records()["method"]) == {"vanilla_fusion"}


# -- dataset files ----------------------------------------------------------------------------------------------
def _nested(depth: int) -> list:
    x = [0.0, 0.0]
    for _ in range(depth):
        x = [x, x]
    return x


class _Reduce:
    def __init__(self, fn, args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _deflate_bomb(path: Path, tiny: Dataset) -> None:
    """A valid .npz whose train/text member inflates to 150 MB of zeros (a few hundred KB on disk)."""
    save_npz(tiny, path.with_suffix(".src.npz"))
    shape = (1_875_000, 4, 5)  # float32: 150 MB
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 4, 5), np.float32))
    with zipfile.ZipFile(path.with_suffix(".src.npz")) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            if info.filename != "train/text.npy":
                z.writestr(info.filename, src.read(info))
                continue
            with z.open("train/text.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_1_0(fh, {**header, "shape": shape})
                chunk = bytes(1_000_000)
                for _ in range(150):
                    fh.write(chunk)
    path.with_suffix(".src.npz").unlink()


def _bad_file(kind: str, path: Path, tiny: Dataset) -> tuple[str, str]:
    """Write a bad data file of ``kind`` at ``path``; return (--datasets entry, expected message)."""
    if kind == "/proc/self/mem":
        return "mosi=/proc/self/mem", "/proc/self/mem: cannot be read as a data file"
    if kind == "directory without data":
        path.mkdir()
        return f"mosi={path}", "No data file for 'mosi': looked for"
    if kind == "empty":
        path.write_bytes(b"")
        return f"mosi={path}", f"{path}: the file is empty"
    if kind == "truncated npz":
        save_npz(tiny, path)
        path.write_bytes(path.read_bytes()[:3000])
        return f"npz={path}", f"{path}: truncated or corrupt .npz"
    if kind == "nested-list pickle":
        path.write_bytes(pickle.dumps({"train": {"text": _nested(34)}}, protocol=2))
        return f"mosi={path}", f"{path}: refused: expanding its shared parts"
    if kind == "bytearray(10**11) pickle":
        path.write_bytes(pickle.dumps({"train": _Reduce(bytearray, (10**11,))}, protocol=2))
        return f"mosi={path}", f"{path}: refused: bytearray(...) would need 93.1 GiB"
    if kind == "npz declaring 3e9 x 4 x 5":
        save_npz(tiny, path)
        with zipfile.ZipFile(path) as z:
            members = {i.filename: z.read(i) for i in z.infolist()}
        head = np.lib.format.header_data_from_array_1_0(np.zeros((1, 4, 5), np.float32))
        import io

        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {**head, "shape": (3_000_000_000, 4, 5)})
        members["train/text.npy"] = buf.getvalue() + b"\0" * 80
        with zipfile.ZipFile(path, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
        return f"npz={path}", "train/text: declares 3000000000 x 4 x 5 float32 (223.5 GiB)"
    if kind == "deflate bomb":
        _deflate_bomb(path, tiny)
        return f"npz={path}", f"{path}: refused: its arrays (the largest, train/text: 1875000 x 4 x 5 float32"
    raise AssertionError(kind)


FILES = ["/proc/self/mem", "directory without data", "empty", "truncated npz", "nested-list pickle",
         "bytearray(10**11) pickle", "npz declaring 3e9 x 4 x 5", "deflate bomb"]


@pytest.mark.parametrize("kind", FILES)
def test_bad_dataset_files(tmp_path: Path, tiny_mosi: Dataset, kind: str) -> None:
    entry, message = _bad_file(kind, tmp_path / "data.bin", tiny_mosi)
    t0 = time.perf_counter()
    res = cli.invoke(app, [*RUN, "--datasets", entry, "--out", str(tmp_path / "r")])
    one_line_error(res, message)
    assert time.perf_counter() - t0 < 20
    assert not (tmp_path / "r").exists()
    one_line_error(cli.invoke(app, ["data", "info", entry]), message)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nested-list pickle", "bytearray(10**11) pickle", "deflate bomb"])
def test_memory_bombs_fail_fast_in_bounded_memory(tmp_path: Path, tiny_mosi: Dataset, kind: str) -> None:
    """In a process whose address space is capped at 3 GiB: a loader that allocated what the file asks for
    would die or report a MemoryError; the bound refuses first, in seconds."""
    entry, message = _bad_file(kind, tmp_path / "data.bin", tiny_mosi)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", "data", "info", entry], capture_output=True, text=True,
                          preexec_fn=cap, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr.replace("\n", "") and "MemoryError" not in done.stderr
    assert time.perf_counter() - t0 < 60


# -- protocol parameters, method options and report options ------------------------------------------------------
def test_bad_protocol_parameters() -> None:
    from corruptions.degradation import Noise
    from corruptions.removal import RandomMissing

    for make, message in ((lambda: RandomMissing(rates=(1.5,)), "random_missing.rates: 1.5 is out of range"),
                          (lambda: RandomMissing(rates=3), "random_missing.rates must be"),
                          (lambda: Noise(impulse_rates=("a",)), "noise.impulse_rates")):
        with pytest.raises(ValueError, match=message.replace(".", "\\.").replace("(", "\\(")) as info:
            make()
        assert "\n" not in str(info.value)


REPORT = [
    (["--format", "html"], "unknown format(s) ['html']"),
    (["--test", "ztest"], "unknown test 'ztest'"),
    (["--correction", "bonferroni"], "unknown correction 'bonferroni'"),
    (["--ci", "wide"], "unknown interval 'wide'"),
    (["--figures", "some"], "unknown figures option 'some'"),
    (["--metric", "acc8"], "Unknown metric 'acc8'"),
    (["--reference", "mult"], "reference method 'mult' is not in the results"),
    (["--test", "bootstrap", "--all-pairs"], "--all-pairs tests over seeds"),
]


@pytest.mark.parametrize(("args", "message"), REPORT, ids=[" ".join(a) for a, _ in REPORT])
def test_bad_report_options(done_run: Path, args: list[str], message: str) -> None:
    before = snapshot(done_run)
    one_line_error(cli.invoke(app, ["report", str(done_run), "--allow-partial", *args]), message)
    assert snapshot(done_run) == before


def test_report_and_status_on_what_is_no_run_directory(done_run: Path, tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    for cmd in (["report", str(f)], ["status", str(f)]):
        one_line_error(cli.invoke(app, cmd), f"{f} is a file, not a mibench run directory")
    one_line_error(cli.invoke(app, ["status", str(tmp_path / "none")]), "is not a mibench run directory")
    one_line_error(cli.invoke(app, ["report", str(done_run), "--allow-partial", "--out", str(f)]),
                   f"{f} is a file, not a directory")
    one_line_error(cli.invoke(app, ["report", str(done_run), str(done_run), "--allow-partial"]), "pass --out DIR")
    assert f.read_text() == "x"


# -- run directories: truncated, read-only, full -----------------------------------------------------------------
def test_a_truncated_run_json_is_named_and_left_alone(done_run: Path, tmp_path: Path) -> None:
    run = copy_of(done_run, tmp_path / "run")
    text = (run / "run.json").read_text()
    (run / "run.json").write_text(text[: len(text) // 2])
    before = snapshot(run)
    message = f"{run / 'run.json'} is truncated or corrupt"
    one_line_error(cli.invoke(app, ["status", str(run)]), message)
    one_line_error(cli.invoke(app, ["report", str(run), "--allow-partial"]), message)
    one_line_error(cli.invoke(app, [*RUN, "--out", str(run)]), message)
    assert snapshot(run) == before


@pytest.mark.parametrize("method", METHODS)
def test_a_read_only_run_directory_on_resume_and_report(done_run: Path, tmp_path: Path, method: str,
                                                        monkeypatch: pytest.MonkeyPatch, record_property) -> None:
    run = copy_of(done_run, tmp_path / "ro" / "run")
    before = snapshot(run)
    with read_only(tmp_path / "ro", monkeypatch, method) as how:
        record_property("fault", how)
        one_line_error(cli.invoke(app, [*RUN, "--out", str(run)]), str(run), "Read-only file system")
        one_line_error(cli.invoke(app, ["report", str(run), "--allow-partial"]), "Read-only file system",
                       "--out DIR writes it elsewhere")
        res = cli.invoke(app, ["report", str(run), "--allow-partial", "--out", str(tmp_path / "rep")])
        assert res.exit_code == 0, res.output  # the results stay readable: a report elsewhere works
        assert snapshot(run) == before


@pytest.mark.parametrize("method", METHODS)
def test_a_new_out_under_a_read_only_mount(tmp_path: Path, method: str, monkeypatch: pytest.MonkeyPatch,
                                           record_property) -> None:
    with read_only(tmp_path / "ro", monkeypatch, method) as how:
        record_property("fault", how)
        one_line_error(cli.invoke(app, [*RUN, "--out", str(tmp_path / "ro" / "new")]), str(tmp_path / "ro" / "new"),
                       "cannot create the run directory: Read-only file system")
        assert not (tmp_path / "ro" / "new").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_full_disk_on_run_and_on_resume_loses_nothing(done_run: Path, tmp_path: Path, method: str,
                                                        monkeypatch: pytest.MonkeyPatch, record_property) -> None:
    want = RunStore.read(done_run).records().drop(columns="cell").sort_values(["seed", "condition", "metric"])
    with full_disk(tmp_path / "disk", 40_000, monkeypatch, method) as (how, make_room):
        record_property("fault", how)
        run = tmp_path / "disk" / "run"
        one_line_error(cli.invoke(app, [*RUN, "--out", str(run)]), "No space left on device",
                       "everything stored before is kept")
        store = RunStore.read(run)  # run.json whole, records hold only complete rows of done cells
        assert store.integrity_problems() == []
        done = [c for c, e in store.meta["cells"].items() if e["status"] == "done"]
        assert len(store.records()) == 56 * len(done)
        before = results(run)
        one_line_error(cli.invoke(app, [*RUN, "--out", str(run)]), "No space left on device")  # resume, still full
        assert results(run) == before  # run.json may have noted the resume; no result changed
        make_room()
        res = cli.invoke(app, [*RUN, "--out", str(run)])
        assert res.exit_code == 0, res.output
        got = RunStore.read(run).records().drop(columns="cell").sort_values(["seed", "condition", "metric"])
        assert got.reset_index(drop=True).equals(want.reset_index(drop=True))


def test_status_reports_a_lock_file_and_run_json_as_they_are(done_run: Path) -> None:
    res = cli.invoke(app, ["status", str(done_run)])
    assert res.exit_code == 0 and "integrity:" not in res.output
    assert json.loads((done_run / "run.json").read_text())["cells"]
    assert not os.path.exists(done_run / ".mibench.lock")
