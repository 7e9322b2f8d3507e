"""Data with natural missingness (a ``.npz`` whose ``present`` mask leaves some samples with text only): the
fixed patterns score only the samples that have one of their modalities, records say how many, and every
per-sample statistic of the report is computed over exactly those samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_releases import SIZES, minimal_npz

from harness import runner
from harness.config import RunConfig
from harness.registry import METRICS
from harness.store import RunStore
from reports.load import load_results
from reports.persample import bootstrap_intervals, persample_pvalues

TEXT_ONLY = 3  # the first test samples have no audio and no vision


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("natural")
    present = np.ones((SIZES["test"], 3), dtype=bool)
    present[:TEXT_ONLY, 1:] = False
    minimal_npz(root / "data.npz", changes={"test/present": present})
    cfg = RunConfig(methods=("vanilla_fusion", "modality_dropout"), datasets=(f"npz={root / 'data.npz'}",),
                    seeds=(0, 1), protocols=("fixed_pattern",), out=str(root / "run"), device="cpu", workers=1,
                    method_options={"*": {"epochs": 2, "batch_size": 4}})
    summary = runner.run(cfg)
    assert not summary.failed, summary.failed
    return root / "run"


def test_patterns_score_only_samples_that_have_one_of_their_modalities(run_dir: Path) -> None:
    rec = RunStore.read(run_dir).records()
    n = rec.groupby("condition")["n"].unique().map(lambda v: int(v[0])).to_dict()
    assert n["full"] == n["text"] == n["text+audio"] == SIZES["test"]
    assert n["audio"] == n["vision"] == n["audio+vision"] == SIZES["test"] - TEXT_ONLY
    assert np.isfinite(rec["value"]).all()


def test_per_sample_statistics_use_the_scored_samples(run_dir: Path) -> None:
    results = load_results([run_dir], allow_partial=True)
    store = RunStore.read(run_dir)
    preds = store.predictions("npz__modality_dropout__seed0")
    k = list(preds["conditions"]).index("fixed_pattern/audio")
    scored = preds["evaluated"][k]
    assert scored.sum() == SIZES["test"] - TEXT_ONLY and np.isnan(preds["pred"][k][~scored]).all()
    mae = METRICS.get("mae")(preds["pred"][k][scored], preds["target"][scored])
    ci = bootstrap_intervals(results, "npz", "fixed_pattern", ["mae"], rng=np.random.default_rng(0),
                             conditions=["audio"], n_resamples=200)
    row = ci[ci["method"] == "modality_dropout"].iloc[0]
    assert np.isfinite(row["ci_low"]) and row["ci_low"] <= row["ci_high"]
    assert min(row["ci_low"], mae) >= 0
    for test in ("bootstrap", "randomization"):
        p = persample_pvalues(results, "npz", "fixed_pattern", ["mae"], "vanilla_fusion", test=test,
                              rng=np.random.default_rng(0), conditions=["audio"], count=200)
        assert len(p) == 1 and 0 < p["p_value"].iloc[0] <= 1
