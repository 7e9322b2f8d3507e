"""Robustness summaries: trapezoid AUC on the real severities, clean/incomplete/worst, relative robustness of
curves in both metric directions, effective robustness against a reference."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from records import record

from harness.comparisons import compare_to_reference
from harness.robustness import robustness_summary, trapezoid_auc
from harness.stats import aggregate

# ---------------------------------------------------------------- robustness


def test_trapezoid_auc_on_non_uniform_severities() -> None:
    # sorted points (0.1, 0.9), (0.2, 0.7), (0.5, 0.4):
    # area = (0.9 + 0.7) / 2 * 0.1 + (0.7 + 0.4) / 2 * 0.3 = 0.08 + 0.165 = 0.245; range 0.4 -> 0.6125
    assert trapezoid_auc([0.5, 0.1, 0.2], [0.4, 0.9, 0.7], normalize=False) == pytest.approx(0.245)
    assert trapezoid_auc([0.5, 0.1, 0.2], [0.4, 0.9, 0.7]) == pytest.approx(0.6125)
    with pytest.raises(ValueError):
        trapezoid_auc([0.1, 0.1], [0.5, 0.6])
    with pytest.raises(ValueError):
        trapezoid_auc([0.1], [0.5])


def robustness_records() -> pd.DataFrame:
    patterns = {"M": {"full": 0.8, "text": 0.7, "audio": 0.5, "text+audio": 0.75},
                "R": {"full": 0.9, "text": 0.85, "audio": 0.6, "text+audio": 0.88}}
    noise = {"M": {0.2: 0.7, 0.5: 0.4}, "R": {0.2: 0.6, 0.5: 0.3}}
    mae_patterns = {"M": {"full": 1.0, "text": 1.2, "audio": 1.5},
                    "R": {"full": 0.9, "text": 1.0, "audio": 1.2}}
    mae_noise = {"M": {0.5: 1.4}, "R": {0.5: 1.1}}
    rows = []
    for method in ("M", "R"):
        for metric, pats, curve in (("acc2_non0", patterns, noise), ("mae", mae_patterns, mae_noise)):
            rows += [record(method, 0, v, condition=c, metric=metric) for c, v in pats[method].items()]
            rows += [record(method, 0, v, protocol="noise", condition=f"noise/audio@{sev}", severity=sev,
                            curve="noise/audio", metric=metric) for sev, v in curve[method].items()]
    for rate, v in {0.0: 0.8, 0.5: 0.6, 1.0: 0.5}.items():  # a curve that has its own severity-0 point
        rows.append(record("M", 0, v, protocol="random_missing", condition=f"rate={rate}", severity=rate,
                           curve="random_missing"))
    rows.append(record("M", 1, 0.82))  # seed 1: no reference seed, no curve
    return pd.DataFrame(rows)


def test_robustness_summary_on_a_constructed_example() -> None:
    out = robustness_summary(robustness_records(), {"acc2_non0": True, "mae": False}, reference="R")
    got = out.set_index(["method", "seed", "metric", "summary", "curve"], drop=False)
    m = lambda s, c=None, metric="acc2_non0", method="M", seed=0: got.loc[(method, seed, metric, s, c)]  # noqa: E731
    assert m("clean")["value"] == pytest.approx(0.8)
    assert m("incomplete_mean")["value"] == pytest.approx((0.7 + 0.5 + 0.75) / 3)  # "full" excluded
    assert m("worst_pattern")["value"] == pytest.approx(0.5) and m("worst_pattern")["detail"] == "audio"
    assert m("incomplete_drop")["value"] == pytest.approx(0.8 - 0.65)
    assert m("incomplete_ratio")["value"] == pytest.approx(0.65 / 0.8)
    # clean point inserted at 0: ((0.8 + 0.7) / 2 * 0.2 + (0.7 + 0.4) / 2 * 0.3) / 0.5 = (0.15 + 0.165) / 0.5
    assert m("auc", "noise/audio")["value"] == pytest.approx(0.63)
    # own 0 point kept, nothing inserted: ((0.8 + 0.6) / 2 * 0.5 + (0.6 + 0.5) / 2 * 0.5) / 1.0
    assert m("auc", "random_missing")["value"] == pytest.approx(0.625)
    # relative forms from the severity-0 point: 0.63 / 0.8; drop at the largest severity 0.8 - 0.4
    assert m("relative_auc", "noise/audio")["value"] == pytest.approx(0.63 / 0.8)
    assert m("max_severity_drop", "noise/audio")["value"] == pytest.approx(0.4)
    assert m("max_severity_drop", "noise/audio")["detail"] == "0.5"
    assert m("relative_auc", "random_missing")["value"] == pytest.approx(0.625 / 0.8)  # its own 0 point
    assert m("max_severity_drop", "random_missing")["value"] == pytest.approx(0.8 - 0.5)
    # ER = mean_s [f(s) - (ref(s) + f(0) - ref(0))], f(0) - ref(0) = -0.1: 0.7 - 0.5 = 0.2, 0.4 - 0.2 = 0.2
    assert m("effective_robustness", "noise/audio")["value"] == pytest.approx(0.2)
    assert m("effective_robustness", "noise/audio")["detail"] == "R"
    assert m("effective_robustness", "noise/audio", method="R")["value"] == pytest.approx(0.0)
    assert math.isnan(m("effective_robustness", "random_missing")["value"])  # the reference has no such curve
    # mae, lower is better: drop and ER are signed so that positive = worse / more robust
    assert m("worst_pattern", metric="mae")["detail"] == "audio"
    assert m("incomplete_drop", metric="mae")["value"] == pytest.approx(1.35 - 1.0)
    # ER = -(1.4 - (1.1 + 1.0 - 0.9)) = -0.2: M loses more than the shifted reference
    assert m("effective_robustness", "noise/audio", metric="mae")["value"] == pytest.approx(-0.2)
    seed1 = out[(out["method"] == "M") & (out["seed"] == 1)]
    assert seed1["summary"].tolist() == ["clean"]
    summary_means = aggregate(out, by=("dataset", "method", "metric", "summary", "curve"))
    assert summary_means["n"].max() == 2 and len(summary_means) == out.groupby(
        ["method", "metric", "summary", "curve"], dropna=False).ngroups
    compared = compare_to_reference(out, "R", higher_is_better={"acc2_non0": True, "mae": False},
                                    cell=("dataset", "metric", "summary", "curve"))
    clean_row = compared[(compared["summary"] == "clean") & (compared["metric"] == "acc2_non0")].iloc[0]
    assert clean_row["n"] == 1 and "not computable (n<2)" in clean_row["note"]  # seed 1 has no reference
    assert clean_row["mean_diff"] == pytest.approx(0.8 - 0.9)


def test_relative_robustness_of_curves_on_non_uniform_severities_both_directions() -> None:
    acc = {0.05: 0.85, 0.15: 0.80, 0.6: 0.50}  # clean (full) 0.9 is inserted at severity 0
    mae = {0.05: 0.55, 0.15: 0.70, 0.6: 1.10}  # clean 0.5
    rows = [record("M", 0, 0.9), record("M", 0, 0.5, metric="mae")]
    for metric, curve in (("acc2_non0", acc), ("mae", mae)):
        rows += [record("M", 0, v, protocol="noise", condition=f"s={sev}", severity=sev, curve="noise/x",
                        metric=metric) for sev, v in curve.items()]
    out = robustness_summary(pd.DataFrame(rows), {"acc2_non0": True, "mae": False})
    got = out.set_index(["metric", "summary"])["value"]
    # acc area: (0.9 + 0.85)/2 * 0.05 + (0.85 + 0.8)/2 * 0.10 + (0.8 + 0.5)/2 * 0.45
    #         = 0.04375 + 0.0825 + 0.2925 = 0.41875; AUC = 0.41875 / 0.6; relative = 0.41875 / (0.9 * 0.6)
    assert got[("acc2_non0", "auc")] == pytest.approx(0.41875 / 0.6)
    assert got[("acc2_non0", "relative_auc")] == pytest.approx(0.41875 / 0.54)  # 0.7755: lost 22 %
    assert got[("acc2_non0", "max_severity_drop")] == pytest.approx(0.9 - 0.5)  # positive = worse
    # mae area: (0.5 + 0.55)/2 * 0.05 + (0.55 + 0.7)/2 * 0.10 + (0.7 + 1.1)/2 * 0.45
    #         = 0.02625 + 0.0625 + 0.405 = 0.49375; relative = 0.49375 / (0.5 * 0.6) = 1.6458 (> 1 is worse)
    assert got[("mae", "relative_auc")] == pytest.approx(0.49375 / 0.3)
    assert got[("mae", "max_severity_drop")] == pytest.approx(1.1 - 0.5)  # lower is better: still positive = worse
    no_clean = robustness_summary(pd.DataFrame(rows[2:5]), {"acc2_non0": True}).set_index("summary")["value"]
    assert math.isnan(no_clean["relative_auc"]) and math.isnan(no_clean["max_severity_drop"])
    assert no_clean["auc"] == pytest.approx(((0.85 + 0.8) / 2 * 0.1 + (0.8 + 0.5) / 2 * 0.45) / 0.55)
