"""The CLI through typer's test runner: run, list, report, status and their errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app

cli = CliRunner()
FAST = ["--preset", "tiny", "--device", "cpu", "--set", "epochs=1", "--set", "batch_size=32",
        "--protocols", "fixed_pattern"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    res = cli.invoke(app, ["run", "--methods", "all", "--datasets", "synth-mosi,synth-iemocap", "--seeds", "1",
                           "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    return out


def test_run_prints_a_table_per_dataset(run_dir: Path) -> None:
    res = cli.invoke(app, ["run", "--methods", "all", "--datasets", "synth-mosi,synth-iemocap", "--seeds", "1",
                           "--out", str(run_dir), *FAST])  # resumes: nothing to train
    assert res.exit_code == 0, res.output
    assert "0 trained" in res.output
    assert "**synth-mosi**, acc2_non0 (%)" in res.output and "**synth-iemocap**, ua (%)" in res.output
    # the method column is padded to the longest registered name, so match the row by its first cell only
    assert re.search(r"\| vanilla_fusion +\|", res.output) and "mean (incomplete)" in res.output
    assert "(partial run: not reportable)" in res.output  # tiny preset, 1 epoch
    report = run_dir / "report"
    assert (report / "report.md").is_file() and (report / "tables" / "synth-iemocap__fixed_pattern__ua.tex").is_file()
    assert (report / "figures" / "synth-mosi__heatmap__acc2_non0.png").is_file()


def test_report_with_a_metric_keeps_every_format_and_dataset(run_dir: Path) -> None:
    res = cli.invoke(app, ["report", str(run_dir), "--metric", "mae", "--allow-partial", "--figures", "none"])
    assert res.exit_code == 0, res.output
    tables = [[ln for ln in block.splitlines() if ln.startswith("|")] for block in res.output.split("\n\n")]
    tables = [t for t in tables if t]
    # synth-mosi: overview, fixed_pattern and robustness of mae; synth-iemocap keeps its defaults (ua, wa, f1)
    assert len(tables) == 3 + 7
    for lines in tables:
        assert lines[0].split("|")[1].strip() == "method"
        assert len({len(ln) for ln in lines}) == 1, "columns must be aligned"
    assert "lower is better" in res.output and "n = 1 seed;" in res.output
    note = "metric mae does not apply to synth-iemocap, a classification dataset (mae is a regression metric)"
    assert f"Note: {note}" in " ".join(res.output.split())
    assert note in (run_dir / "report" / "report.md").read_text().replace("\n", " ")
    files = {p.name for p in (run_dir / "report" / "tables").iterdir()}
    for dataset in ("synth-mosi", "synth-iemocap"):
        for suffix in (".md", ".tex", ".csv"):
            assert f"{dataset}__overview{suffix}" in files and f"{dataset}__methods{suffix}" in files
    assert "synth-mosi__fixed_pattern__mae.tex" in files and "synth-iemocap__fixed_pattern__ua.csv" in files


def test_report_errors(run_dir: Path, tmp_path: Path) -> None:
    res = cli.invoke(app, ["report", str(run_dir), "--metric", "acc8"])
    assert res.exit_code == 2 and "Unknown metric 'acc8'. Did you mean 'acc7'" in res.output
    res = cli.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not a mibench run directory" in res.output


def test_status(run_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from harness.registry import METHODS

    n = 2 * len(METHODS.resolve(["all"]))
    res = cli.invoke(app, ["status", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert f"Cells: {n}/{n} done" in res.output and "(finished, not reportable;" in res.output
    rows = [ln for ln in res.output.splitlines() if "__seed0" in ln]
    assert len(rows) == n and all(re.search(r" done +\d\d-\d\d \d\d:\d\d +\d+\.\d +\d+\.\d", r) for r in rows)
    assert "ETA" not in res.output  # a finished run
    # the same run caught mid-way: two cells running, one queued, no reportability mark yet
    live = tmp_path / "live"
    shutil.copytree(run_dir, live)
    meta = json.loads((live / "run.json").read_text())
    meta.pop("reportable")
    cells = list(meta["cells"])
    for cell in cells[:2]:
        meta["cells"][cell].update(status="running", started_at=meta["cells"][cell]["started_at"])
    meta["cells"][cells[2]].update(status="queued")
    (live / "run.json").write_text(json.dumps(meta))
    res = cli.invoke(app, ["status", str(live)])
    assert res.exit_code == 0, res.output
    assert f"Cells: {n - 3}/{n} done · 2 running · 1 queued" in res.output
    assert "(unfinished: running, or stopped before the end;" in res.output
    assert re.search(r"ETA: (\d+:\d\d:\d\d|\?) if the run is still going", res.output)


def test_runs_lists_the_runs_under_mibench_home(run_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setenv("MIBENCH_HOME", str(tmp_path))
    res = cli.invoke(app, ["runs"])
    assert res.exit_code == 0 and "No runs under" in res.output
    shutil.copytree(run_dir, tmp_path / "runs" / "0123abcd")
    (tmp_path / "runs" / "not-a-run").mkdir()
    res = cli.invoke(app, ["runs"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    row = next(ln for ln in res.output.splitlines() if "0123abcd" in ln)
    assert "partial" in row and re.search(r"(\d+)/\1", row) and "synth-mosi, synth-iemocap · 1 seeds · tiny" in row
    assert "not-a-run" not in res.output


def test_dry_run_prints_the_plan_and_trains_nothing(run_dir: Path, tmp_path: Path) -> None:
    res = cli.invoke(app, ["run", "--dry-run", "--methods", "vanilla_fusion,modality_dropout", "--datasets",
                           "synth-mosi,synth-iemocap", "--seeds", "3", "--out", str(tmp_path / "new"), *FAST])
    assert res.exit_code == 0, res.output
    assert "Dry run: nothing is trained or written." in res.output and not (tmp_path / "new").exists()
    assert "Cells: 12 (2 datasets x 2 methods x 3 seeds), 12 to train" in res.output
    assert re.search(r"fixed_pattern v\d +7 +7", res.output)
    # on the run directory of the module's run: timings are stored, seeds 1 and 2 are still to train
    res = cli.invoke(app, ["run", "--dry-run", "--methods", "all", "--datasets", "synth-mosi,synth-iemocap",
                           "--seeds", "3", "--out", str(run_dir), *FAST])
    assert res.exit_code == 0, res.output
    assert "cells done: the same config resumes it" in res.output
    assert re.search(r"vanilla_fusion +4 +\d+\.\d \(from 2 cells\)", res.output)
    assert re.search(r"Estimated time: \d+:\d\d:\d\d of cell time for \d+ cell\(s\)", res.output)


@pytest.mark.parametrize("kind", ["methods", "datasets", "metrics", "protocols"])
def test_list(kind: str) -> None:
    res = cli.invoke(app, ["list", kind])
    assert res.exit_code == 0
    expected = {"methods": "vanilla_fusion", "datasets": "synth-mosi", "metrics": "acc2_non0",
                "protocols": "fixed_pattern"}[kind]
    assert expected in res.output


def test_list_unknown_kind() -> None:
    res = cli.invoke(app, ["list", "models"])
    assert res.exit_code == 2 and "valid: methods, datasets, metrics, protocols" in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["--methods", "mmim"], "Unknown method 'mmim'"),
    (["--seeds", "x"], "--seeds must be a count"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--device", "tpu"], "device must be auto, cpu, cuda or cuda:N"),
    (["--set", "epochs"], "--set expects KEY=VALUE"),
    (["--preset", "huge"], "Unknown preset 'huge' for synth-mosi; valid presets: ['full', 'small', 'tiny']"),
])
def test_run_bad_input_is_one_line_error(args: list[str], message: str, tmp_path: Path) -> None:
    res = cli.invoke(app, ["run", "--out", str(tmp_path / "r"), *args])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and message in res.output.replace("\n", " ")
    assert "Traceback" not in res.output


@pytest.mark.parametrize("argv", [[], ["run"]])
def test_no_options_runs_the_embedded_default(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    from harness import runner
    from harness.registry import METHODS

    seen = {}

    def capture(cfg, progress=None, overwrite=False, table_metric=None):
        seen["plan"] = runner.prepare(cfg)
        raise ValueError("stop here: the plan is what this test checks")

    monkeypatch.setenv("MIBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(runner, "run", capture)
    res = cli.invoke(app, argv)
    assert res.exit_code == 2 and "stop here" in res.output
    plan = seen["plan"]
    assert plan.methods == METHODS.resolve(["all"]) and len(plan.methods) >= 4
    assert list(plan.datasets) == ["synth-mosi", "synth-iemocap"]
    assert {o.preset for o in plan.datasets.values()} == {"small"} and plan.config.seeds == (0, 1, 2)
    assert [p.name for p in plan.protocols] == ["fixed_pattern", "missing_rate", "noise"]
    assert plan.out.parent == tmp_path / "runs"


def test_failed_cells_exit_nonzero_with_a_summary(tmp_path: Path) -> None:
    res = cli.invoke(app, ["run", "--methods", "test_nan_plugin", "--plugin", "plugin_nan", "--datasets",
                           "synth-mosi", "--seeds", "1", "--out", str(tmp_path / "r"), *FAST])
    assert res.exit_code == 1, res.output
    assert "1 cell(s) failed:" in res.output
    assert "synth-mosi__test_nan_plugin__seed0: NonFiniteLossError: non-finite training loss" in res.output


def test_plugin_option_registers_a_method_for_the_run(tmp_path: Path) -> None:
    res = cli.invoke(app, ["run", "--methods", "test_plugin_mean", "--plugin", "plugin_method", "--datasets",
                           "synth-iemocap", "--seeds", "2", "--workers", "2", "--out", str(tmp_path / "r"), *FAST])
    assert res.exit_code == 0, res.output
    assert re.search(r"\(2\s+trained", res.output) and re.search(r"\| test_plugin_mean +\|", res.output)


@pytest.mark.parametrize(("args", "message"), [
    (["--metric", "acc8"], "Unknown metric 'acc8'. Did you mean 'acc7'"),
    (["--datasets", "synth-mosi", "--metric", "wa"], "--metric wa is a classification metric"),
    (["--seeds", "0,"], "has an empty item"),
    (["--datasets", "synth-mosi,synth-mosi"], "names synth-mosi more than once"),
])
def test_run_errors_come_before_training(args: list[str], message: str, tmp_path: Path) -> None:
    res = cli.invoke(app, ["run", "--out", str(tmp_path / "r"), "--preset", "tiny", *args])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error:") and message in res.output.replace("\n", " ")
    assert not (tmp_path / "r").exists()


def test_cuda_without_a_gpu_is_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the no-GPU error cannot occur")
    res = cli.invoke(app, ["run", "--device", "cuda", "--out", str(tmp_path / "r"), "--preset", "tiny"])
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0 and "no CUDA GPU is available" in res.output


def test_on_a_terminal_the_tables_are_rich_with_styles(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from harness import cli as cli_module

    terminal = Console(force_terminal=True, width=80, record=True, color_system="standard")
    monkeypatch.setattr(cli_module, "console", terminal)
    res = cli.invoke(app, ["report", str(run_dir), "--allow-partial", "--figures", "none", "--format", "md"])
    assert res.exit_code == 0, res.output
    text = terminal.export_text(clear=False)
    assert "**" not in text and "<ins>" not in text and "| method" not in text
    assert "\x1b[1m" in terminal.export_text(styles=True)  # the best value in bold, as a style
    assert max(len(line) for line in text.splitlines() if not line.startswith("Report: ")) <= 80  # a path is a path
    assert "vanilla_fusion" in text and "mean (incomplete)" in text
    md = (run_dir / "report" / "tables" / "synth-mosi__fixed_pattern__acc2_non0.md").read_text()
    assert "**" in md and "| method" in md  # the files stay Markdown


@pytest.mark.parametrize("command", [["run"], ["report"], ["status"], ["runs"], ["list"], ["data", "info"], []])
def test_help_shows_readable_types_and_defaults(command: list[str]) -> None:
    res = cli.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    options = [ln for ln in res.output.splitlines() if "--" in ln and "--help" not in ln]
    assert not any("<bool>" in ln or "<list[" in ln or "<str>" in ln for ln in options), res.output
    if command == ["run"]:
        text = " ".join(res.output.split())  # help lines wrap anywhere
        assert "[default: (all)]" in text and "[default: (fixed_pattern,missing_rate,noise)]" in text
        assert "--dry-run" in text and "[default: (3)]" in text
    if not command:
        assert "Log progress details" in res.output  # --verbose says what it does
