"""Reference tests for harness.stats, harness.comparisons, harness.resampling and harness.robustness.

Every statistic is checked against scipy or against a computation written out by hand below.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.comparisons import compare_all_pairs, compare_to_reference
from harness.resampling import (
    approximate_randomization_test,
    bootstrap_ci,
    paired_bootstrap_test,
    seed_mean_bootstrap_ci,
    seed_stratified_randomization_test,
)
from harness.robustness import robustness_summary, trapezoid_auc
from harness.stats import (
    _bh_by_hand,
    aggregate,
    benjamini_hochberg,
    holm,
    min_attainable_p,
    paired_ttest,
    power_warning,
    recommend_seeds,
    wilcoxon,
)

NAN = float("nan")


def record(method: str, seed: int, value: float, *, condition: str = "full", protocol: str = "fixed_pattern",
           metric: str = "acc2_non0", severity: float = NAN, curve: str | None = None) -> dict[str, object]:
    return {"dataset": "mosi", "method": method, "seed": seed, "protocol": protocol, "protocol_version": "1",
            "protocol_hash": "h", "condition": condition, "severity": severity, "curve": curve,
            "metric": metric, "value": value}


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    labels = pred.argmax(axis=1) if pred.ndim == 2 else pred
    return float(np.mean(labels == target))


# ---------------------------------------------------------------- aggregate


def test_aggregate_matches_scipy_t_interval_and_handles_n_below_2() -> None:
    values = [0.70, 0.74, 0.69]
    rows = [record("a", s, v) for s, v in enumerate(values)] + [record("a", 3, NAN), record("b", 0, 0.8)]
    out = aggregate(pd.DataFrame(rows)).set_index("method")
    mean, std = np.mean(values), np.std(values, ddof=1)
    low, high = sps.t.interval(0.95, 2, loc=mean, scale=std / math.sqrt(3))
    assert out.loc["a", "n"] == 3  # the NaN value of seed 3 is not counted
    summary = out.loc["a", ["mean", "std", "ci_low", "ci_high"]].tolist()
    assert summary == pytest.approx([mean, std, low, high])
    assert out.loc["b", "n"] == 1 and out.loc["b", "mean"] == pytest.approx(0.8)
    assert out.loc["b", ["std", "ci_low", "ci_high"]].isna().all()
    assert all(pd.api.types.is_numeric_dtype(out[c]) for c in ["mean", "std", "n", "ci_low", "ci_high"])
    assert pd.api.types.is_integer_dtype(out["n"])


def test_aggregate_rejects_a_seed_recorded_twice() -> None:
    with pytest.raises(ValueError, match="one value per seed"):
        aggregate(pd.DataFrame([record("a", 0, 0.7), record("a", 0, 0.71)]))


# ---------------------------------------------------------------- bootstrap CI


def test_bootstrap_ci_is_reproducible_and_covers_the_true_mean() -> None:
    pred = np.random.default_rng(123).normal(2.0, 1.0, size=400)
    target = np.zeros(400)
    mean_error = lambda p, t: float(np.mean(p - t))  # noqa: E731
    first = bootstrap_ci(pred, target, mean_error, rng=np.random.default_rng(0), n_resamples=2000)
    again = bootstrap_ci(pred, target, mean_error, rng=np.random.default_rng(0), n_resamples=2000)
    other = bootstrap_ci(pred, target, mean_error, rng=np.random.default_rng(1), n_resamples=2000)
    assert first == again and first != other
    assert first.ci_low < 2.0 < first.ci_high
    assert first.estimate == pytest.approx(pred.mean())
    # the width matches normal theory, 2 * 1.96 * sigma / sqrt(n), to within 15 %
    assert first.ci_high - first.ci_low == pytest.approx(2 * 1.96 / math.sqrt(400), rel=0.15)


def test_bootstrap_ci_resamples_rows_of_class_scores() -> None:
    rng = np.random.default_rng(5)
    target = rng.integers(0, 3, size=200)
    scores = rng.normal(size=(200, 3))
    scores[np.arange(150), target[:150]] += 10.0  # exactly 150 / 200 rows correct, if nothing else wins
    result = bootstrap_ci(scores, target, accuracy, rng=np.random.default_rng(0), n_resamples=500)
    assert result.estimate >= 0.75 and result.ci_low < result.estimate < result.ci_high


# ---------------------------------------------------------------- paired tests over seeds


def test_paired_ttest_matches_scipy_and_drops_unmatched_seeds() -> None:
    a = {0: 0.70, 1: 0.72, 2: 0.75, 3: 0.71, 7: 0.90}
    b = pd.Series({0: 0.68, 1: 0.69, 2: 0.74, 3: 0.70, 5: 0.50, 6: NAN})
    expected = sps.ttest_rel([0.70, 0.72, 0.75, 0.71], [0.68, 0.69, 0.74, 0.70])
    result = paired_ttest(a, b)
    assert (result.statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert result.n == 4 and result.mean_diff == pytest.approx(0.0175)
    assert "dropped 2 unmatched seed(s)" in result.note


def test_wilcoxon_matches_scipy_and_all_zero_differences_give_p_one() -> None:
    a = [0.71, 0.74, 0.69, 0.80, 0.77, 0.73]
    b = [0.70, 0.71, 0.70, 0.75, 0.70, 0.72]
    expected = sps.wilcoxon(a, b)
    result = wilcoxon(dict(enumerate(a)), dict(enumerate(b)))
    assert (result.statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    same = wilcoxon(dict(enumerate(a)), dict(enumerate(a)))
    assert same.p_value == 1.0 and same.statistic == 0.0 and "all differences zero" in same.note
    assert paired_ttest(dict(enumerate(a)), dict(enumerate(a))).p_value == 1.0  # scipy alone gives NaN


def test_fewer_than_two_seeds_is_not_computable() -> None:
    for test in (paired_ttest, wilcoxon):
        one = test({0: 0.8}, {0: 0.7, 1: 0.6})
        assert one.n == 1 and math.isnan(one.p_value) and one.mean_diff == pytest.approx(0.1)
        assert "not computable (n<2)" in one.note and "dropped 1" in one.note
        none = test({0: 0.8}, {1: 0.7})
        assert none.n == 0 and math.isnan(none.mean_diff)


def test_min_attainable_p_recommend_seeds_and_power_warning() -> None:
    assert min_attainable_p("wilcoxon", 5) == 0.0625
    # scipy's exact Wilcoxon agrees: five differences, all of one sign
    assert sps.wilcoxon([1.0, 2.0, 3.0, 4.0, 5.0]).pvalue == pytest.approx(0.0625)
    assert min_attainable_p("ttest", 3) == 0.0 and min_attainable_p("ttest", 1) == 1.0
    assert recommend_seeds("wilcoxon", 0.05) == 6  # 2 / 2**6 = 0.03125 < 0.05 <= 2 / 2**5
    assert recommend_seeds("ttest", 0.05) == 2
    warning = power_warning("wilcoxon", 5, 0.05)
    assert warning is not None and "0.0625" in warning and "at least 6 seeds" in warning
    assert power_warning("wilcoxon", 6, 0.05) is None and power_warning("ttest", 3, 0.05) is None
    assert power_warning("ttest", 1, 0.05) is not None
    with pytest.raises(ValueError):
        min_attainable_p("sign", 5)  # type: ignore[arg-type]


# ---------------------------------------------------------------- corrections


def test_holm_against_hand_computation() -> None:
    # sorted p: 0.005, 0.01, 0.03, 0.04 (m = 4)
    # raw Holm factors: 4*0.005 = 0.02, 3*0.01 = 0.03, 2*0.03 = 0.06, 1*0.04 = 0.04
    # running maximum: 0.02, 0.03, 0.06, 0.06 -> back in input order:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaN stays NaN and is not counted: the family size is still 4
    assert holm([0.01, NAN, 0.04, 0.03, 0.005]) == pytest.approx([0.03, NAN, 0.06, 0.06, 0.02], nan_ok=True)
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # 2*0.5 = 1.0, max(1.0, 0.6): capped at 1


def test_benjamini_hochberg_against_hand_computation_and_scipy() -> None:
    # sorted p: 0.005, 0.01, 0.03, 0.04; m*p/rank: 0.02, 0.02, 0.04, 0.04; running min from the top:
    # 0.02, 0.02, 0.04, 0.04 -> back in input order:
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # 2*0.5/1 = 1.0, 2*0.6/2 = 0.6 -> running min from the top: 0.6, 0.6
    assert benjamini_hochberg([0.5, 0.6]) == pytest.approx([0.6, 0.6])
    with_nan = benjamini_hochberg([0.01, NAN, 0.04, 0.03, 0.005])
    assert with_nan == pytest.approx([0.02, NAN, 0.04, 0.04, 0.02], nan_ok=True)
    p = np.random.default_rng(0).uniform(size=40) ** 3
    assert _bh_by_hand(p) == pytest.approx(sps.false_discovery_control(p, method="bh"))
    for adjusted in (holm(p), benjamini_hochberg(p)):
        order = np.argsort(p)
        assert np.all(np.diff(adjusted[order]) >= 0) and np.all(adjusted <= 1) and np.all(adjusted >= p)
    with pytest.raises(ValueError):
        holm([0.1, 1.5])


# ---------------------------------------------------------------- per-sample tests


def test_randomization_and_bootstrap_tests_separate_different_from_identical_systems() -> None:
    rng = np.random.default_rng(7)
    target = rng.integers(0, 2, size=300)
    good = np.where(rng.random(300) < 0.9, target, 1 - target)  # about 90 % correct
    chance = rng.integers(0, 2, size=300)  # about 50 % correct
    ar = approximate_randomization_test(good, chance, target, accuracy, rng=np.random.default_rng(0),
                                        n_permutations=500)
    # no permutation is as extreme, so p = (0 + 1) / (R + 1)
    assert ar.p_value == 1 / 501 and ar.statistic > 0.3 and ar.n == 300
    same = approximate_randomization_test(good, good, target, accuracy, rng=np.random.default_rng(0),
                                          n_permutations=500)
    assert same.p_value == 1.0
    boot = paired_bootstrap_test(good, chance, target, accuracy, True, rng=np.random.default_rng(0),
                                 n_resamples=500)
    assert boot.p_value < 0.01 and boot.statistic > 0 and "a better" in boot.note
    error_rate = lambda p, t: 1.0 - accuracy(p, t)  # noqa: E731  (lower is better)
    flipped = paired_bootstrap_test(good, chance, target, error_rate, False, rng=np.random.default_rng(0),
                                    n_resamples=500)
    assert flipped.statistic > 0 and flipped.mean_diff < 0 and "a better" in flipped.note
    assert paired_bootstrap_test(good, good, target, accuracy, True, rng=np.random.default_rng(0),
                                 n_resamples=200).p_value == 1.0


def test_seed_stratified_randomization_pools_seeds() -> None:
    rng = np.random.default_rng(11)
    targets = [rng.integers(0, 3, size=80) for _ in range(3)]
    good = [np.where(rng.random(80) < 0.8, t, (t + 1) % 3) for t in targets]
    weak = [np.where(rng.random(80) < 0.5, t, (t + 1) % 3) for t in targets]
    result = seed_stratified_randomization_test(good, weak, targets, accuracy, rng=np.random.default_rng(0),
                                                n_permutations=400)
    triples = zip(good, weak, targets, strict=True)
    expected_t = np.mean([accuracy(g, t) - accuracy(w, t) for g, w, t in triples])
    assert result.statistic == pytest.approx(expected_t) and result.n == 240 and result.p_value < 0.01
    null = seed_stratified_randomization_test(good, good, targets, accuracy, rng=np.random.default_rng(0),
                                              n_permutations=100)
    assert null.p_value == 1.0


# ---------------------------------------------------------------- comparison tables


def comparison_records() -> pd.DataFrame:
    base = [0.70, 0.72, 0.68, 0.75, 0.71, 0.73]
    wiggle = [0.004, -0.003, 0.002, -0.001, 0.003, -0.004]
    rows = []
    for cond in ("full", "text"):
        for s, (v, w) in enumerate(zip(base, wiggle, strict=True)):
            rows += [record("ref", s, v, condition=cond), record("good", s, v + 0.05 + w, condition=cond),
                     record("ref", s, 1.0 - v, condition=cond, metric="mae"),
                     record("good", s, 0.98 - v + w, condition=cond, metric="mae")]
            if not (cond == "text" and s == 5):  # one unmatched seed
                rows.append(record("same", s, v - w, condition=cond))
    rows.append(record("lonely", 0, 0.9))
    return pd.DataFrame(rows)


def test_compare_to_reference_tests_corrects_and_flags() -> None:
    records = comparison_records()
    hib = {"acc2_non0": True, "mae": False}
    table = compare_to_reference(records, "ref", higher_is_better=hib, test="ttest", correction="holm")
    row = table.set_index(["condition", "metric", "method"])
    ref_full = records.query("method == 'ref' and condition == 'full' and metric == 'acc2_non0'")["value"]
    good_full = records.query("method == 'good' and condition == 'full' and metric == 'acc2_non0'")["value"]
    expected = sps.ttest_rel(good_full.to_numpy(), ref_full.to_numpy())
    assert row.loc[("full", "acc2_non0", "good"), "p_value"] == pytest.approx(expected.pvalue)
    assert row.loc[("text", "acc2_non0", "same"), "n"] == 5
    assert "dropped 1 unmatched seed(s)" in row.loc[("text", "acc2_non0", "same"), "note"]
    lonely = row.loc[("full", "acc2_non0", "lonely")]
    assert math.isnan(lonely["p_value"]) and math.isnan(lonely["p_adjusted"]) and not lonely["significant"]
    assert "not computable (n<2)" in lonely["note"]
    # family = all rows of (mosi, acc2_non0) with a finite p: 4 here; the mae rows are another family
    acc = table[(table["metric"] == "acc2_non0") & table["p_value"].notna()]
    assert len(acc) == 4
    assert acc["p_adjusted"].to_numpy() == pytest.approx(holm(acc["p_value"].to_numpy()))
    assert bool(row.loc[("full", "acc2_non0", "good"), "significant"])
    assert not bool(row.loc[("full", "acc2_non0", "same"), "significant"])
    assert row.loc[("full", "mae", "good"), "direction"] == "better"
    assert row.loc[("full", "mae", "good"), "mean_diff"] < 0
    with pytest.raises(ValueError, match="not in records"):
        compare_to_reference(records, "missing", higher_is_better=hib)


def test_compare_with_wilcoxon_warns_about_too_few_seeds_and_all_pairs() -> None:
    records = comparison_records()
    hib = {"acc2_non0": True, "mae": False}
    table = compare_to_reference(records, "ref", higher_is_better=hib, test="wilcoxon", correction="bh")
    row = table.set_index(["condition", "metric", "method"])
    assert "cannot reach p<0.05" in row.loc[("text", "acc2_non0", "same"), "note"]  # n = 5
    assert "cannot reach" not in row.loc[("full", "acc2_non0", "good"), "note"]  # n = 6
    pairs = compare_all_pairs(records, higher_is_better=hib)
    full_acc = pairs[(pairs["condition"] == "full") & (pairs["metric"] == "acc2_non0")]
    assert len(full_acc) == 6  # C(4, 2) pairs of good, lonely, ref, same
    pair = full_acc.set_index(["method_a", "method_b"]).loc[("good", "ref")]
    assert pair["mean_diff"] > 0 and pair["direction"] == "better"


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


def test_seed_mean_bootstrap_ci_matches_scipy_paired_bootstrap() -> None:
    rng = np.random.default_rng(11)
    target = rng.normal(size=120)
    preds = [target + rng.normal(scale=s, size=120) for s in (0.5, 1.0, 1.5)]
    mae = lambda p, t: float(np.mean(np.abs(p - t)))  # noqa: E731
    ours = seed_mean_bootstrap_ci(preds, target, mae, rng=np.random.default_rng(3), n_resamples=999)

    def seed_mean(*arrays: np.ndarray) -> float:  # scipy resamples the same rows of every array (paired)
        *ps, t = arrays
        return float(np.mean([mae(p, t) for p in ps]))

    keyword = "rng" if "rng" in __import__("inspect").signature(sps.bootstrap).parameters else "random_state"
    ref = sps.bootstrap((*preds, target), seed_mean, paired=True, vectorized=False, n_resamples=999,
                        method="percentile", **{keyword: np.random.default_rng(3)})
    assert ours.estimate == pytest.approx(np.mean([mae(p, target) for p in preds]))
    assert (ours.ci_low, ours.ci_high) == pytest.approx(tuple(ref.confidence_interval))
    single = seed_mean_bootstrap_ci(preds[:1], target, mae, rng=np.random.default_rng(4), n_resamples=500)
    assert single == bootstrap_ci(preds[0], target, mae, rng=np.random.default_rng(4), n_resamples=500)
    with pytest.raises(ValueError, match="at least one seed"):
        seed_mean_bootstrap_ci([], target, mae, rng=np.random.default_rng(0))
