"""What a run promises when its driver dies or has company: SIGKILL at random points (report write included)
resumes to the records and report of an uninterrupted run; a second driver is refused while the first runs and a
dead one's lock is taken over; damaged records send their cell back to redo; a killed report is rebuilt.

Drivers are forked from the test process (imports already done, so a driver starts in milliseconds) and run the
real CLI; kills are real SIGKILLs."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.lock import LOCK_NAME, RunLock, RunLockedError
from harness.store import RunStore, temp_files

FORK = multiprocessing.get_context("fork")
KEY = ["dataset", "method", "seed", "protocol", "condition", "metric"]


def argv(out: Path, seeds: int = 3, epochs: int = 2, **extra: str) -> list[str]:
    args = ["run", "--methods", "vanilla_fusion", "--datasets", "synth-mosi", "--seeds", str(seeds), "--preset",
            "tiny", "--device", "cpu", "--set", f"epochs={epochs}", "--protocols", "fixed_pattern",
            "--executor", "sequential", "--out", str(out)]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", v]
    return args


def _drive(args: list[str]) -> None:
    """A driver process: the CLI as `mibench` runs it, its exit status as the process's."""
    logging.disable(logging.CRITICAL)
    try:
        app(args, prog_name="mibench")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    os._exit(code)


def start(args: list[str]) -> multiprocessing.process.BaseProcess:
    proc = FORK.Process(target=_drive, args=(args,))
    proc.start()
    return proc


def records(out: Path):
    return RunStore.read(out).records().sort_values(KEY).reset_index(drop=True)


def report_files(out: Path) -> dict[str, bytes]:
    """Every file of RUN/report by relative path; report.md without what names the run (path, finish time). The
    per-method tables hold measured training times, which no two runs share: they are compared without them."""
    files = {}
    for path in sorted((out / "report").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.name == "report.md":
                text = data.decode().replace(str(out), "RUN")
                text = re.sub(r"### Methods: .*?(?=\n### )", "", text, flags=re.S)
                data = re.sub(r"\d{4}-\d\d-\d\dT[\d:]+\+00:00", "TIME", text).encode()
            if path.name.endswith("__methods.csv"):  # compared without its one measured column
                data = pd.read_csv(path).drop(columns="train_time_s").to_csv(index=False).encode()
            elif "__methods." in path.name:
                data = b"(the .csv above, with timings)"
            files[str(path.relative_to(out / "report"))] = data
    return files


@pytest.mark.slow
def test_sigkill_anywhere_resumes_to_the_uninterrupted_records_and_report(tmp_path: Path) -> None:
    ref, out = tmp_path / "a" / "run", tmp_path / "b" / "run"  # paths of one length: report.md aligns alike
    t0 = time.perf_counter()
    proc = start(argv(ref))
    proc.join(120)
    assert proc.exitcode == 0
    span = time.perf_counter() - t0  # one whole driver: start, train, store, report
    rng = np.random.default_rng(12)
    kills, report_kills, attempts = 0, 0, 0
    while (kills < 10 or report_kills < 2) and attempts < 40:
        attempts += 1
        proc = start(argv(out))
        if kills >= 8 and report_kills < 2:  # aim at the report write: kill once its temp directory exists
            deadline = time.time() + 60
            while proc.is_alive() and time.time() < deadline and not list(out.parent.glob("run/.report.tmp-*")):
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.05))
        else:
            time.sleep(rng.uniform(0, span))
        if proc.is_alive():
            in_report = bool(list(out.glob(".report.tmp-*")))
            proc.kill()  # SIGKILL
            kills += 1
            report_kills += in_report
        proc.join(60)
    assert kills >= 10 and report_kills >= 2, (kills, report_kills)
    proc = start(argv(out))
    proc.join(120)
    assert proc.exitcode == 0
    got, want = records(out), records(ref)
    assert not got.duplicated(KEY).any()
    assert got.drop(columns="cell").equals(want.drop(columns="cell"))
    assert report_files(out) == report_files(ref)
    assert not temp_files(out) and not list(out.glob(".report.*")) and not (out / LOCK_NAME).exists()
    assert RunStore.read(out).integrity_problems() == []


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_a_second_driver_is_refused_naming_the_first_and_no_record_is_doubled(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = start(argv(out, seeds=2, epochs=60, set="patience=1000"))
    _wait_for(lambda: (out / "run.json").exists() and (out / LOCK_NAME).exists())
    res = CliRunner().invoke(app, argv(out, seeds=2, epochs=60, set="patience=1000"))
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"in use by another mibench driver: pid {first.pid} on host " in errors[0]
    assert re.search(r"started \d{4}-\d\d-\d\dT", errors[0]) and "Traceback" not in res.output
    first.join(120)
    assert first.exitcode == 0
    rec = records(out)
    assert len(rec) == 2 * 7 * 8 and not rec.duplicated(KEY).any()


def test_two_drivers_started_together_one_runs_one_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    procs = [start(argv(out, seeds=2)) for _ in range(2)]
    for p in procs:
        p.join(120)
    assert sorted(p.exitcode for p in procs) == [0, 2]
    rec = records(out)
    assert len(rec) == 2 * 7 * 8 and not rec.duplicated(KEY).any()


def _hold_then_die(root: str) -> None:
    lock = RunLock(Path(root))
    lock.acquire()
    time.sleep(600)  # killed long before


def test_a_dead_drivers_lock_is_taken_over_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "run"
    holder = FORK.Process(target=_hold_then_die, args=(str(out),))
    holder.start()
    _wait_for(lambda: (out / LOCK_NAME).exists() and (out / LOCK_NAME).stat().st_size > 0)
    with pytest.raises(RunLockedError, match=f"pid {holder.pid} on host"):
        RunLock(out).acquire()
    holder.kill()
    holder.join()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid  # the dead holder's name stays
    with caplog.at_level(logging.WARNING), RunLock(out):
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"taking over a stale lock of pid {holder.pid}" in caplog.text
    assert not (out / LOCK_NAME).exists()  # released: removed while still held
    with RunLock(tmp_path / "new" / "deep"):
        assert (tmp_path / "new" / "deep").is_dir()
    assert not (tmp_path / "new").exists()  # made for the lock and left empty: removed again


def test_a_lock_of_another_host_is_never_taken_over(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started_at": "yesterday"}))
    with pytest.raises(RunLockedError, match=f"held by pid 1 on host elsewhere.*delete {tmp_path / LOCK_NAME}"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).exists()


def test_damaged_records_send_their_cell_back_and_duplicates_are_repaired(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert CliRunner().invoke(app, argv(out, seeds=2)).exit_code == 0
    want = records(out)
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    seed1 = [i for i, ln in enumerate(lines) if "seed1" in ln]
    lines[seed1[5]] = lines[seed1[5]][:30] + "\n"  # an unreadable row of a done cell
    lines.append(lines[0])  # a duplicate of seed 0's first row
    (out / "records.jsonl").write_text("".join(lines))
    (out / ".run.json.x1y2").write_text("{")  # a temp file of a killed run.json write
    problems = RunStore.read(out).integrity_problems()
    assert any("line" in p and "unreadable" in p for p in problems)
    assert any("synth-mosi__vanilla_fusion__seed1 is done but only 55 of its 56 records" in p for p in problems)
    assert any("seed0 has 1 duplicated record" in p for p in problems)
    assert any(".run.json.x1y2" in p for p in problems)
    res = CliRunner().invoke(app, ["status", str(out)])
    assert res.exit_code == 0 and "integrity: cell synth-mosi__vanilla_fusion__seed1 is done but" in res.output
    assert len(RunStore.read(out).records()) == 56  # readers never see the damaged cell
    res = CliRunner().invoke(app, argv(out, seeds=2))
    assert res.exit_code == 0 and re.search(r"1\s+trained,\s+1\s+resumed", res.output), res.output
    assert records(out).equals(want)
    assert RunStore.read(out).integrity_problems() == [] and not (out / ".run.json.x1y2").exists()


def test_a_partial_or_missing_report_is_rebuilt(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert CliRunner().invoke(app, argv(out, seeds=1)).exit_code == 0
    want = report_files(out)
    (out / "report" / "report.md").unlink()  # what an older mibench killed mid-write left
    next(iter((out / "report" / "tables").iterdir())).unlink()
    (out / ".report.tmp-dead").mkdir()  # and a temp dir of a killed writer
    assert "report/ is missing or incomplete" in " ".join(RunStore.read(out).integrity_problems())
    assert CliRunner().invoke(app, ["report", str(out), "--allow-partial", "--format", "md,latex,csv"]).exit_code == 0
    assert not (out / ".report.tmp-dead").exists()
    import shutil

    shutil.rmtree(out / "report")
    assert CliRunner().invoke(app, argv(out, seeds=1)).exit_code == 0  # the next run writes it again
    assert report_files(out) == want
