"""The Ray executor on a real local Ray instance (``ray.init(num_cpus=2)``): the tiny grid gives the sequential
executor's records, a worker SIGKILLed mid-unit is replaced and its unit rerun, a worker whose data differ from
the driver's refuses to train, and the CLI starts its own instance. CI installs the ``ray`` extra; without Ray
these tests fail (the ``ray_instance`` fixture cannot import it), they are never skipped."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import runner
from harness.cli import app
from harness.config import RunConfig
from harness.plan import group_cells, prepare_process
from harness.store import RunStore

KEY = ["dataset", "method", "seed", "protocol", "condition", "metric"]
# long enough (no early stop) that a unit is still running when the driver sees its epochs
SLOW = {"*": {"epochs": 80, "patience": 1000, "batch_size": 32}}
pytestmark = pytest.mark.slow


def config(out: Path, **kw) -> RunConfig:
    base = dict(methods=("vanilla_fusion",), datasets=("synth-mosi", "synth-iemocap"), seeds=(0, 1), preset="tiny",
                out=str(out), device="cpu", method_options=SLOW, protocols=("fixed_pattern",))
    return RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def ray_instance():
    import ray  # the ray extra is required here: a missing Ray is an error, not a skip

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("ray") / "seq"
    runner.run(config(out, executor="sequential"))
    return records(out)


def records(out: Path):
    return RunStore.read(out).records().sort_values(KEY).reset_index(drop=True)[KEY + ["value", "n"]]


def test_the_tiny_grid_on_ray_gives_the_sequential_records(ray_instance, sequential, tmp_path: Path) -> None:
    summary = runner.run(config(tmp_path / "ray", executor="ray", workers=2))
    assert len(summary.done) == 4 and not summary.failed
    assert records(tmp_path / "ray").equals(sequential)
    cells = RunStore.read(tmp_path / "ray").meta["cells"]
    assert {c["execution"]["executor"] for c in cells.values()} == {"ray"}
    assert {c["execution"]["attempts"] for c in cells.values()} == {1}


def _ray_workers_running_a_unit() -> list[int]:
    """Pids of Ray actor processes executing ``UnitWorker.run`` now (Ray sets the process title)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text.startswith("ray::UnitWorker.run"):
            pids.append(int(cmdline.parent.name))
    return pids


class KillOnce:
    """Progress that SIGKILLs the Ray worker running a unit once it has trained a few epochs of a cell."""

    def __init__(self) -> None:
        self.killed: list[int] = []
        self.starts: list[str] = []

    def start(self, total: int, done: int, out: Path, todo: list) -> None: ...
    def started(self, cell) -> None:
        self.starts.append(cell.id)
    def finished(self, cell, status: str, seconds: float) -> None: ...

    def epoch(self, cell, epoch: int, total: int) -> None:
        if not self.killed and epoch >= 3:
            for pid in _ray_workers_running_a_unit():
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)


def test_a_killed_ray_worker_is_replaced_and_its_unit_rerun(ray_instance, sequential, tmp_path: Path) -> None:
    progress = KillOnce()
    summary = runner.run(config(tmp_path / "ray", executor="ray", workers=1), progress)
    assert len(progress.killed) == 1, "no Ray worker was running a unit when the epochs arrived"
    assert len(summary.done) == 4 and not summary.failed
    cells = RunStore.read(tmp_path / "ray").meta["cells"]
    attempts = {c: e["execution"]["attempts"] for c, e in cells.items()}
    assert sorted(attempts.values()) == [1, 1, 1, 2]  # the killed unit ran twice, the others once
    rerun = next(c for c, a in attempts.items() if a == 2)
    assert progress.starts.count(rerun) == 2
    assert records(tmp_path / "ray").equals(sequential)  # nothing lost, nothing twice


def test_a_worker_whose_data_differ_from_the_drivers_refuses_to_train(ray_instance, tmp_path: Path) -> None:
    from harness.executors.ray import RayExecutor

    cfg = config(tmp_path / "r", executor="ray", workers=1, ray_data="path", datasets=("synth-mosi",), seeds=(0,),
                 method_options={"*": {"epochs": 1}})
    loaded = prepare_process(cfg)
    mosi = loaded.datasets["synth-mosi"]
    # as if the driver had read another file at the same path than the worker does
    loaded.datasets["synth-mosi"] = dataclasses.replace(mosi, test=dataclasses.replace(mosi.test, y=mosi.test.y * 0.5))
    stored = []
    with pytest.raises(ValueError, match=r"refused to train: data of synth-mosi: digest \w+ here, \w+ on the driver"):
        RayExecutor(cfg, ["harness.datasets.synthetic"]).execute(
            loaded, group_cells(loaded.plan, loaded.plan.cells, 1, {}), stored.append, None)
    assert stored == []


def test_the_cli_starts_a_local_ray_instance(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "harness", "run", "--methods", "vanilla_fusion", "--datasets", "synth-mosi",
           "--seeds", "1", "--preset", "tiny", "--device", "cpu", "--set", "epochs=1", "--protocols",
           "fixed_pattern", "--executor", "ray", "--workers", "1", "--out", str(tmp_path / "r")]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and re.search(r"\(1\s+trained", done.stdout)
    cell = RunStore.read(tmp_path / "r").meta["cells"]["synth-mosi__vanilla_fusion__seed0"]
    assert cell["status"] == "done" and cell["execution"]["address"] == "local"


def test_ray_not_installed_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the extra
    res = CliRunner().invoke(app, ["run", "--methods", "vanilla_fusion", "--datasets", "synth-mosi", "--preset",
                                   "tiny", "--executor", "ray", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert 'needs Ray, which is not installed: pip install "mibench[ray]"' in res.output
    assert "Traceback" not in res.output and not (tmp_path / "r").exists()
