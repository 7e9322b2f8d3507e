"""Like-for-like comparisons: one selection policy per run, one backbone and budget for every method, the
reference declared on a card, and validation selection computed as documented."""

from __future__ import annotations

import ast
import json
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from baselines.base import BACKBONE_FIELDS
from harness.cli import app
from harness.config import method_config
from harness.data import Dataset
from harness.registry import METHODS, METRICS
from harness.selection import Scorer, patterns

cli = CliRunner()
ALL = "vanilla_fusion,modality_dropout,mmin,modal_immune"  # `all` may also hold plugins other tests registered
FAST = ["--preset", "tiny", "--seeds", "2", "--protocols", "fixed_pattern", "--set", "epochs=1", "--device", "cpu",
        "--workers", "1"]


class Fixed:
    """A model whose predictions are a fixed function of the available inputs (to recompute scores by hand)."""

    def __init__(self, task: str) -> None:
        self.task = task

    def predict(self, batch):
        z = sum(batch.x[m].mean((1, 2)) * (j + 1) for j, m in enumerate(batch.x))
        if self.task == "regression":
            return z
        return torch.stack([z * k for k in range(4)], -1)


@pytest.mark.parametrize("policy", ["complete", "incomplete", "all"])
def test_selection_score_is_the_mean_over_the_policys_patterns(tiny_data: Dataset, policy: str) -> None:
    valid, task = tiny_data.valid, tiny_data.spec.task
    metric = "mae" if task == "regression" else "ua"
    model, fn = Fixed(task), METRICS.get(metric)
    keeps = {"complete": [(True,) * 3], "incomplete": [k for k in product([True, False], repeat=3) if 0 < sum(k) < 3],
             "all": [k for k in product([True, False], repeat=3) if sum(k)]}[policy]
    by_hand = np.mean([fn(model.predict(valid.drop(torch.tensor(k))).numpy(), valid.y.numpy()) for k in keeps])
    assert len(patterns(3, policy)) == len(keeps)
    assert Scorer(valid, policy, metric)(model) == pytest.approx(float(by_hand), rel=1e-6)


def test_selection_leaves_out_samples_a_pattern_cannot_score(tiny_mosi: Dataset) -> None:
    keep = torch.ones(len(tiny_mosi.valid), 3, dtype=torch.bool)
    keep[:5] = torch.tensor([True, False, False])  # five samples have text only
    valid = tiny_mosi.valid.drop(keep)
    scorer = Scorer(valid, "incomplete", "mae")
    assert scorer.rows[patterns(3, "incomplete").tolist().index([False, True, False])] == len(valid) - 5
    assert bool(scorer.batch.present.any(1).all()), "no emptied sample is scored"


def cells(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def test_every_method_gets_the_same_selection_backbone_and_budget(tmp_path: Path) -> None:
    res = cli.invoke(app, ["run", "--methods", ALL, "--datasets", "synth-mosi", *FAST, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    meta = cells(tmp_path / "a")
    entries = meta["cells"].values()
    assert len(entries) == 2 * 4
    assert {json.dumps(e["selection"], sort_keys=True) for e in entries} == {'{"metric": "mae", "policy": "complete"}'}
    assert len({json.dumps(e["backbone"], sort_keys=True) for e in entries}) == 1
    assert set(next(iter(entries))["backbone"]) == {"mode", *BACKBONE_FIELDS}
    budgets = {(e["budget"]["epochs"], e["budget"]["patience"], e["budget"]["batch_size"]) for e in entries}
    assert budgets == {(1, 8, 64)}
    assert meta["reference"] == "vanilla_fusion" and meta["selection"] == {"policy": "complete", "metric": "auto"}
    mmin = meta["cells"]["synth-mosi__mmin__seed0"]
    assert mmin["budget"]["stages"] == {"teacher": 1, "mmin": 1}

    res = cli.invoke(app, ["run", "--methods", ALL, "--datasets", "synth-mosi", *FAST, "--select", "incomplete",
                           "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    entries = cells(tmp_path / "b")["cells"].values()
    assert {e["selection"]["policy"] for e in entries} == {"incomplete"}
    # MMIN's full-modality teacher is selected on complete inputs whatever the run's policy (it never sees others)
    assert cells(tmp_path / "b")["cells"]["synth-mosi__mmin__seed0"]["fit"]["extra"]["stages"]["teacher"][
        "selection_policy"] == "complete"


def test_backbone_options_paper_mode_and_opting_one_method_out() -> None:
    shared = {m: method_config(m, {}, "shared", {"hidden": 32}) for m in ("vanilla_fusion", "mmin", "modal_immune")}
    assert {c.hidden for c in shared.values()} == {32}
    paper = method_config("mmin", {}, "paper")
    assert (paper.backbone, paper.embed, paper.batch_size, paper.lr_schedule) == ("paper", 128, 128, "linear_decay")
    assert method_config("modal_immune", {}, "paper").seq_encoder == "bilstm"
    one = {m: method_config(m, {"mmin": {"backbone": "paper"}}) for m in ("vanilla_fusion", "mmin")}
    assert one["mmin"].embed == 128 and one["vanilla_fusion"].backbone == "shared"
    with pytest.raises(ValueError, match=r"Unknown key\(s\) \['fusion_heads'\] in the backbone options"):
        method_config("vanilla_fusion", {}, "shared", {"fusion_heads": 2})


def test_backbone_and_selection_through_the_command_line(tmp_path: Path) -> None:
    from harness import runner
    from harness.config import build_run_config, parse_set

    cfg = build_run_config(methods="vanilla_fusion,mmin", method_options=parse_set(["backbone.hidden=48",
                                                                                      "mmin.backbone=paper"]))
    plan = runner.prepare(cfg)
    assert plan.method_configs["vanilla_fusion"].hidden == 48 and plan.method_configs["mmin"].hidden == 128
    res = cli.invoke(app, ["run", "--methods", "vanilla_fusion", "--select", "sometimes", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "select must be complete, incomplete or all" in res.output
    res = cli.invoke(app, ["run", "--methods", "vanilla_fusion", "--set", "select_metric=ua",
                           "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "select_metric is a run option" in res.output
    assert not (tmp_path / "x").exists()


def test_the_reference_is_declared_on_a_card_not_named_in_code() -> None:
    declared = [m for m in METHODS.names() if METHODS.get(m).card.reference]
    assert declared == ["vanilla_fusion"]
    from harness import runner
    from harness.config import RunConfig

    assert runner.prepare(RunConfig(methods=("mmin", "modality_dropout"))).reference is None
    assert runner.prepare(RunConfig(methods=("all",), reference="mmin")).reference == "mmin"
    with pytest.raises(ValueError, match="--reference 'mmin' is not one of this run's methods"):
        runner.prepare(RunConfig(methods=("vanilla_fusion",), reference="mmin"))
    names = set(METHODS.names())
    for root in ("harness",):  # no method name as a value in harness/ code (docstrings and help texts aside)
        for path in Path(root).rglob("*.py"):
            consts = [n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)]
            assert not names & {c for c in consts if isinstance(c, str)}, path
