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


def test_report_markdown(run_dir: Path) -> None:
    res = cli.invoke(app, ["report", str(run_dir), "--metric", "mae", "--allow-partial", "--figures", "none"])
    assert res.exit_code == 0, res.output
    tables = [[ln for ln in block.splitlines() if ln.startswith("|")] for block in res.output.split("\n\n")]
    tables = [t for t in tables if t]
    assert len(tables) == 3  # overview, fixed_pattern, robustness summary (synth-mosi only: mae is regression)
    for lines in tables:
        assert lines[0].split("|")[1].strip() == "method"
        assert len({len(ln) for ln in lines}) == 1, "columns must be aligned"
    assert "lower is better" in res.output and "n = 1 seed;" in res.output


def test_report_errors(run_dir: Path, tmp_path: Path) -> None:
    res = cli.invoke(app, ["report", str(run_dir), "--metric", "acc8"])
    assert res.exit_code == 2 and "Unknown metric 'acc8'. Did you mean 'acc7'" in res.output
    res = cli.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not a mibench run directory" in res.output


def test_status(run_dir: Path) -> None:
    from harness.registry import METHODS

    res = cli.invoke(app, ["status", str(run_dir)])
    assert res.exit_code == 0 and res.output.count("done") == 2 * len(METHODS.resolve(["all"]))


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
