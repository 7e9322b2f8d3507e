"""Reference tests for harness.stats and harness.comparisons (resampling and robustness have their own files).

Every statistic is checked against scipy or against a computation written out by hand below.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from records import NAN, record
from scipy import stats as sps

from harness.comparisons import compare_all_pairs, compare_to_reference
from harness.stats import (
    ZERO_VARIANCE,
    _bh_by_hand,
    _quiet,
    aggregate,
    benjamini_hochberg,
    holm,
    min_attainable_p,
    paired_ttest,
    power_warning,
    recommend_seeds,
    wilcoxon,
)

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


def test_ttest_on_equal_nonzero_differences_is_undefined_and_silent() -> None:
    # The same accuracy gap on both seeds (e.g. 0.1475 on a small test set): float noise aside, the
    # differences have zero variance, so t = mean / 0. scipy itself returns p ~ 0 (and warns): a ‡ mark.
    a = {0: 0.7, 1: 0.8}
    b = {0: 0.8475, 1: 0.9475}
    diff = np.array([a[0] - b[0], a[1] - b[1]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert sps.ttest_rel(list(a.values()), list(b.values())).pvalue < 1e-12  # what the fix guards against
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning reaching the caller fails the test
        result = paired_ttest(a, b)
        three = paired_ttest({0: 0.5, 1: 0.6, 2: 0.9}, {0: 0.6, 1: 0.7, 2: 1.0})
    assert math.isnan(result.p_value) and math.isnan(result.statistic) and result.n == 2
    assert result.note == ZERO_VARIANCE and result.mean_diff == pytest.approx(diff.mean())
    assert math.isnan(three.p_value) and ZERO_VARIANCE in three.note
    # a real spread is still tested, and equal to scipy
    spread = paired_ttest({0: 0.7, 1: 0.8}, {0: 0.85, 1: 0.94})
    assert spread.p_value == pytest.approx(sps.ttest_rel([0.7, 0.8], [0.85, 0.94]).pvalue) and not spread.note


def test_zero_variance_comparisons_stay_outside_the_correction_family() -> None:
    ref, good = [0.70, 0.72, 0.68], [0.75, 0.79, 0.74]
    rows = [record("ref", s, v) for s, v in enumerate(ref)] + [record("good", s, v) for s, v in enumerate(good)]
    rows += [record("flat", s, v + 0.1475) for s, v in enumerate(ref)]  # the same gap on every seed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = compare_to_reference(pd.DataFrame(rows), "ref", higher_is_better={"acc2_non0": True})
    row = table.set_index("method")
    assert math.isnan(row.loc["flat", "p_value"]) and not row.loc["flat", "significant"]
    assert ZERO_VARIANCE in row.loc["flat", "note"] and row.loc["flat", "direction"] == "better"
    expected = sps.ttest_rel(good, ref).pvalue
    assert row.loc["good", "p_adjusted"] == pytest.approx(expected)  # Holm over m = 1: 'flat' is not counted


def test_wilcoxon_on_equal_nonzero_differences_is_the_sign_flip_floor() -> None:
    # All |d| tie and every sign agrees: under H0 each sign flips with probability 1/2, and only the two
    # all-equal-sign outcomes are as extreme, so p = 2 / 2^n exactly (the two-sided sign test).
    for n in (2, 5, 6):
        a = {s: 0.6 + 0.01 * s for s in range(n)}
        b = {s: v + 0.1475 for s, v in a.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = wilcoxon(a, b)
        assert result.p_value == pytest.approx(2.0 / 2.0**n) == pytest.approx(sps.binomtest(0, n).pvalue)
        assert result.p_value == pytest.approx(min_attainable_p("wilcoxon", n)) and result.statistic == 0.0


def test_scipy_warnings_become_notes() -> None:
    def noisy(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        warnings.warn("Precision loss occurred in moment calculation", RuntimeWarning, stacklevel=1)
        return 1.0, 0.5

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        statistic, p_value, notes = _quiet(noisy, np.zeros(2), np.ones(2))
    assert (statistic, p_value) == (1.0, 0.5)
    assert notes == ["scipy: Precision loss occurred in moment calculation"]


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
