"""Seed groups trained as one stacked computation: each member is the run its own cell would be."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from baselines.encoders import LSTMEncoder, lstm_scan
from harness.cli import app
from harness.config import method_config
from harness.data import Dataset
from harness.registry import METHODS
from harness.seeding import seed_everything, torch_generator
from harness.stacking import StackedGroup, fit_group, stackable
from harness.training import FitContext

CPU = torch.device("cpu")
SEEDS = [11, 22, 33]


def models(name: str, data: Dataset, seeds: list[int], **options) -> list:
    cfg = method_config(name, {"*": {"batch_size": 32, "dropout": 0.0, **options}})
    out = []
    for s in seeds:
        seed_everything(s)
        out.append(METHODS.get(name)(data.spec, cfg))
    return out


def ctxs(seeds: list[int]) -> list[FitContext]:
    return [FitContext(CPU, torch_generator(s), s) for s in seeds]


def separate(name: str, data: Dataset, seeds: list[int], **options) -> list:
    """Each seed as its own run, with the LSTMs computed as the stacked path computes them (``lstm_scan``): the
    same arithmetic, so the comparison is not swamped by Adam's first steps amplifying the ~1e-8 rounding
    differences of nn.LSTM's fused kernel on near-zero gradient entries."""
    runs = []
    for m, c in zip(models(name, data, seeds, **options), ctxs(seeds), strict=True):
        for mod in m.modules():
            if isinstance(mod, LSTMEncoder):
                mod.scan = True
        runs.append((m, m.fit(data, c)))
    return runs


@torch.no_grad()
def rel(a: torch.nn.Module, b: torch.nn.Module) -> float:
    num = sum(((p - q) ** 2).sum() for p, q in zip(a.parameters(), b.parameters(), strict=True))
    return float(num.sqrt() / sum((p ** 2).sum() for p in a.parameters()).sqrt())


def test_lstm_scan_is_nn_lstm() -> None:
    for bidirectional in (False, True):
        lstm = torch.nn.LSTM(5, 7, batch_first=True, bidirectional=bidirectional)
        x = torch.randn(4, 6, 5)
        assert torch.allclose(lstm_scan(lstm, x), lstm(x)[0], atol=1e-6)


def test_the_baselines_that_stack_and_those_that_do_not() -> None:
    assert stackable(METHODS.get("vanilla_fusion")) and stackable(METHODS.get("modality_dropout"))
    assert not stackable(METHODS.get("mmin")) and not stackable(METHODS.get("modal_immune"))


@pytest.mark.parametrize("name", ["vanilla_fusion", "modality_dropout"])
def test_a_stacked_group_matches_separate_runs(tiny_mosi: Dataset, name: str) -> None:
    """Deterministic setting (dropout 0, each member's data order and augmentation from its own generator, as in
    its own run): parameters after one epoch within 1e-5 relative, and the same selected epochs after three."""
    one = separate(name, tiny_mosi, SEEDS, epochs=1)
    group = models(name, tiny_mosi, SEEDS, epochs=1)
    fit_group(group, tiny_mosi, ctxs(SEEDS))
    assert all(rel(m, g) < 1e-5 for (m, _), g in zip(one, group, strict=True))
    three = separate(name, tiny_mosi, SEEDS, epochs=3)
    group = models(name, tiny_mosi, SEEDS, epochs=3)
    _, fits = fit_group(group, tiny_mosi, ctxs(SEEDS))
    assert [f.best_epoch for _, f in three] == [f.best_epoch for f in fits]
    assert [f.best_value for _, f in three] == pytest.approx([f.best_value for f in fits], rel=1e-5)


def test_each_member_stops_early_and_restores_its_own_best_state(tiny_mosi: Dataset) -> None:
    seeds = [1, 2, 3, 4]
    alone = separate("vanilla_fusion", tiny_mosi, seeds, epochs=12, patience=1, lr=3e-3)
    group = models("vanilla_fusion", tiny_mosi, seeds, epochs=12, patience=1, lr=3e-3)
    _, fits = fit_group(group, tiny_mosi, ctxs(seeds))
    runs = [f.epochs_run for f in fits]
    assert runs == [f.epochs_run for _, f in alone] and len(set(runs)) > 1, "members stop at different epochs"
    for (m, f), g, gf in zip(alone, group, fits, strict=True):
        assert gf.best_epoch == f.best_epoch < gf.epochs_run
        assert rel(m, g) < 1e-4  # the restored state is the member's own best, not the group's last
        pred = g.predict(tiny_mosi.valid)
        assert float((pred - tiny_mosi.valid.y).abs().mean()) == pytest.approx(gf.best_value, rel=1e-5)


def test_clipping_never_mixes_members(tiny_mosi: Dataset) -> None:
    group = StackedGroup(models("vanilla_fusion", tiny_mosi, [1, 2]), [1, 2])
    for p in group.params.values():
        p.grad = torch.ones_like(p)
        p.grad[0] *= 100.0  # member 0's gradient norm is far above the clip
        p.grad[1] *= 1e-4  # member 1's is far below it (about 0.02), so it must stay as it is
    before = [p.grad[1].clone() for p in group.params.values()]
    group.clip(1.0)
    norm = [torch.sqrt(sum((p.grad[k] ** 2).sum() for p in group.params.values())) for k in range(2)]
    assert float(norm[0]) == pytest.approx(1.0, rel=1e-4)
    assert all(torch.equal(p.grad[1], b) for p, b in zip(group.params.values(), before, strict=True))


def test_a_nan_fails_only_its_own_member(tiny_mosi: Dataset) -> None:
    seeds = [5, 6, 7]
    group = models("vanilla_fusion", tiny_mosi, seeds, epochs=2)
    with torch.no_grad():
        group[1].head[0].weight.fill_(float("inf"))  # member 1 diverges at once
    reference = models("vanilla_fusion", tiny_mosi, [5], epochs=2)[0]
    for mod in reference.modules():
        if isinstance(mod, LSTMEncoder):
            mod.scan = True
    ref_fit = reference.fit(tiny_mosi, ctxs([5])[0])
    _, fits = fit_group(group, tiny_mosi, ctxs(seeds))
    assert isinstance(fits[1], str) and "non-finite training loss" in fits[1]
    assert not isinstance(fits[0], str) and not isinstance(fits[2], str)
    assert rel(reference, group[0]) < 1e-5 and fits[0].best_value == pytest.approx(ref_fit.best_value, rel=1e-5)


@pytest.mark.slow
def test_stacked_executor_stores_what_the_sequential_one_does(tmp_path: Path) -> None:
    """Same record keys and run.json entries; values within seed noise (dropout masks come from per-member
    generators when stacked, so they are not bit-identical): a Welch t-test over the per-seed mean MAE of every
    method finds no difference (p > 0.01)."""
    common = ["--methods", "vanilla_fusion,modality_dropout", "--datasets", "synth-mosi", "--preset", "tiny",
              "--seeds", "4", "--protocols", "fixed_pattern,missing_rate", "--device", "cpu"]
    runs = {}
    for executor in ("stacked", "sequential"):
        res = CliRunner().invoke(app, ["run", *common, "--executor", executor, "--out", str(tmp_path / executor)])
        assert res.exit_code == 0, res.output
        runs[executor] = pd.read_json(tmp_path / executor / "records.jsonl", lines=True)
    key = ["dataset", "method", "seed", "protocol", "condition", "metric"]
    a, b = (runs[e].sort_values(key).reset_index(drop=True) for e in ("stacked", "sequential"))
    assert a[key].equals(b[key]) and list(a.columns) == list(b.columns) and (a.n == b.n).all()
    for method in ("vanilla_fusion", "modality_dropout"):
        per_seed = [r[(r.metric == "mae") & (r.method == method)].groupby("seed").value.mean() for r in (a, b)]
        assert stats.ttest_ind(*per_seed, equal_var=False).pvalue > 0.01, per_seed
    meta = json.loads((tmp_path / "stacked" / "run.json").read_text())
    cell = meta["cells"]["synth-mosi__vanilla_fusion__seed0"]
    assert cell["execution"] == {"executor": "stacked", "compile": False, "tf32": False, "group_size": 4}
    seq = json.loads((tmp_path / "sequential" / "run.json").read_text())["cells"]["synth-mosi__vanilla_fusion__seed0"]
    assert set(cell) - {"group_time_s"} == set(seq) and seq["execution"]["group_size"] == 1
