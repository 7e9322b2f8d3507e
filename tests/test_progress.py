"""What a researcher sees while a run goes on: the ETA, the terminal display at 80 columns, the log lines for a
non-terminal (one per finished cell, a heartbeat), and a real run whose output goes to a file."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from harness.plan import Cell
from harness.progress import LogProgress, RichProgress, clock, eta_seconds

CELLS = [Cell("synth-mosi", m, s) for m in ("vanilla_fusion", "modal_immune-no_curvature_gate") for s in range(3)]


def test_eta_from_finished_cells_per_method() -> None:
    done = [("a", 10.0), ("a", 14.0), ("b", 100.0)]
    # queued: two a (12 each) and one b (100); running: b for 40 s (60 left), a for 20 s (nothing left)
    assert eta_seconds(done, [("b", 40.0, None), ("a", 20.0, None)], ["a", "a", "b"], slots=2) == \
        pytest.approx((24 + 100 + 60) / 2)
    # a method none of whose cells finished: projected from its running cell's share of the epoch budget
    assert eta_seconds(done, [("c", 30.0, 0.25)], ["c"], slots=1) == pytest.approx(120 + 90)
    # without a projection it takes the mean of all finished cells, until a cell outruns that
    assert eta_seconds(done, [], ["c"], slots=1) == pytest.approx(124 / 3)
    assert eta_seconds(done, [("c", 50.0, None)], [], slots=1) is None
    assert eta_seconds([], [("a", 5.0, None)], ["a"], slots=1) is None and clock(None) == "?"
    assert clock(3725.4) == "1:02:05"


def test_terminal_display_fits_80_columns_and_shows_only_executing_cells() -> None:
    screen = io.StringIO()
    progress = RichProgress(Console(file=screen, width=80, force_terminal=True))
    view = Console(file=io.StringIO(), width=80, record=True)  # one frame of the live display
    progress.start(8, 2, Path("/runs/abc123"), CELLS)
    try:
        for cell in CELLS[:3]:
            progress.started(cell)
            progress.epoch(cell, 3, 30)
        progress.finished(CELLS[0], "done", 12.0)
        progress.started(CELLS[3])  # the long name, executing, no epoch yet
        view.print(progress._render())
    finally:
        progress.stop()
    assert screen.getvalue().startswith("Run directory: /runs/abc123\n")
    lines = view.export_text().splitlines()
    assert lines[0].startswith("3/8 cells · 0:00:0") and "elapsed · ETA 0:00:" in lines[0]
    assert max(map(len, lines)) <= 80
    running = [ln.strip() for ln in lines[1:]]
    assert running[:2] == ["synth-mosi · vanilla_fusion · seed 1 · epoch 3/30",
                           "synth-mosi · vanilla_fusion · seed 2 · epoch 3/30"]
    assert running[2].startswith("synth-mosi · modal_immune-no_curvature_gate") and len(running) == 3
    last = screen.getvalue().rstrip().splitlines()[-1]
    assert "3/8 cells" in last and "ETA" not in last  # the summary left when it stops


def test_log_progress_logs_a_line_per_finished_cell_and_a_heartbeat(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="harness.progress")
    progress = LogProgress(heartbeat_s=0.05)
    progress.start(6, 0, Path("/runs/x"), CELLS)
    try:
        progress.started(CELLS[0])
        progress.epoch(CELLS[0], 5, 30)
        time.sleep(0.3)
        progress.finished(CELLS[0], "done", 2.5)
    finally:
        progress.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "run directory: /runs/x (6 cells, 0 done earlier)"
    beats = [m for m in messages if "running: synth-mosi · vanilla_fusion · seed 0 · epoch 5/30" in m]
    assert beats and beats[0].startswith("0/6 cells · ")
    assert messages[-1].startswith("synth-mosi · vanilla_fusion · seed 0 done in 2.5 s · 1/6 cells · ")


@pytest.mark.slow
def test_a_run_whose_output_goes_to_a_file_prints_a_line_per_finished_cell(tmp_path: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "harness", "run", "--methods", "vanilla_fusion", "--datasets", "synth-mosi",
           "--seeds", "2", "--preset", "tiny", "--device", "cpu", "--set", "epochs=1", "--protocols",
           "fixed_pattern", "--workers", "1", "--out", str(out)]
    with open(log, "w") as fh:
        res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    assert res.returncode == 0, text
    assert f"run directory: {out} (2 cells, 0 done earlier)" in text
    finished = [ln for ln in text.splitlines() if " done in " in ln and "harness.progress" in ln]
    assert len(finished) == 2 and "2/2 cells" in finished[-1]
    assert "\x1b[" not in text  # no terminal control sequences in a file
