"""Metric values against scikit-learn/scipy and hand-computed edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score, recall_score

from harness.metrics import compute_all, metrics_for
from harness.registry import METRICS


def m(name: str, p, t) -> float:
    return METRICS.get(name)(np.asarray(p, dtype=float), np.asarray(t, dtype=float))


@pytest.fixture
def regression() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.round(rng.uniform(-3, 3, 300) * 3) / 3
    t[:20] = 0.0
    p = t + rng.normal(0, 1.0, 300)
    p[20:25] = 0.0
    return p, t


def test_regression_metrics_match_sklearn_and_scipy(regression) -> None:
    p, t = regression
    nz = t != 0
    assert m("acc2_has0", p, t) == pytest.approx(accuracy_score(t >= 0, p >= 0))
    assert m("f1_has0", p, t) == pytest.approx(f1_score(t >= 0, p >= 0, average="weighted"))
    assert m("acc2_non0", p, t) == pytest.approx(accuracy_score(t[nz] > 0, p[nz] > 0))
    assert m("f1_non0", p, t) == pytest.approx(f1_score(t[nz] > 0, p[nz] > 0, average="weighted"))
    assert m("mae", p, t) == pytest.approx(np.mean(np.abs(p - t)))
    assert m("corr", p, t) == pytest.approx(pearsonr(p, t).statistic)


def test_f1_argument_order_matters_and_we_use_true_first() -> None:
    # Weighted F1 is not symmetric; the swapped call (older MMSA/MulT) gives a different number here.
    t = np.array([1, 1, 1, 1, 1, 1, -1, -1.0])
    p = np.array([1, 1, 1, -1, -1, -1, -1, 1.0])
    right = f1_score(t > 0, p > 0, average="weighted")
    wrong = f1_score(p > 0, t > 0, average="weighted")
    assert right != pytest.approx(wrong)
    assert m("f1_non0", p, t) == pytest.approx(right)


def test_round_half_to_even_at_half_values() -> None:
    # np.round: 0.5 -> 0, -0.5 -> -0, 2.5 -> 2, -2.5 -> -2, 1.5 -> 2 (half-up would give 1, -0, 3, -2, 2)
    t = np.array([0.5, -0.5, 2.5, -2.5, 1.5])
    assert m("acc7", [0, 0, 2, -2, 2], t) == 1.0
    assert m("acc7", [1, -1, 3, -3, 1], t) == 0.0
    # clipping: 3.4 rounds like 3, -7 like -3; acc5 clips at +-2 so 2.5 -> 2 and 3 -> 2
    assert m("acc7", [3.4, -7.0], [3.0, -3.0]) == 1.0
    assert m("acc5", [3.0, 2.5], [2.0, 2.0]) == 1.0


def test_non0_excludes_zero_labels_and_zero_prediction_is_negative() -> None:
    t = np.array([0.0, 0.0, 1.0, -1.0, 2.0])
    p = np.array([5.0, -5.0, 0.0, -1.0, 1.0])
    # non-zero labels: [1, -1, 2] with predictions [0 (negative!), -1, 1] -> 2/3 correct
    assert m("acc2_non0", p, t) == pytest.approx(2 / 3)
    # has0 counts zero labels positive and p >= 0 positive: [T, F, T, T, T] -> 4/5
    assert m("acc2_has0", p, t) == pytest.approx(4 / 5)


def test_mae_on_unclipped_values_and_corr_nan_when_constant() -> None:
    assert m("mae", [10.0, -3.0], [3.0, -3.0]) == pytest.approx(3.5)
    assert np.isnan(m("corr", [1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_classification_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    t = rng.integers(0, 4, 200)
    scores = rng.normal(size=(200, 4))
    scores[np.arange(200), t] += rng.uniform(0, 2, 200)
    pred = scores.argmax(1)
    got = compute_all("classification", scores, t)
    assert got["wa"] == pytest.approx(accuracy_score(t, pred))
    assert got["ua"] == pytest.approx(recall_score(t, pred, average="macro"))
    assert got["f1_macro"] == pytest.approx(f1_score(t, pred, average="macro"))
    assert got["f1_weighted"] == pytest.approx(f1_score(t, pred, average="weighted"))


def test_ua_differs_from_wa_under_imbalance() -> None:
    t = np.array([0] * 8 + [1] * 2)
    scores = np.zeros((10, 2))
    scores[:, 0] = 1.0  # always predicts the majority class
    assert METRICS.get("wa")(scores, t) == pytest.approx(0.8)
    assert METRICS.get("ua")(scores, t) == pytest.approx(0.5)


def test_ua_is_over_the_dataset_class_list_and_undefined_when_a_class_is_absent() -> None:
    """A class with no test sample is not silently dropped: UA over the class list is then undefined (NaN)."""
    t = np.array([0, 0, 1, 1, 2, 2])
    scores = np.eye(4)[[0, 1, 1, 1, 2, 3]]  # 4 classes in the dataset, class 3 never in the labels
    assert np.isnan(METRICS.get("ua")(scores, t))
    assert METRICS.get("ua")(scores[:, :3], t) == pytest.approx(recall_score(t, scores[:, :3].argmax(1),
                                                                                 average="macro"))


def test_specs_have_direction_and_task() -> None:
    assert not METRICS.get("mae").higher_is_better
    assert METRICS.get("acc2_non0").higher_is_better
    assert {s.name for s in metrics_for("classification")} == {"wa", "ua", "f1_macro", "f1_weighted"}
    assert METRICS.get("acc2_non0").display(0.8123) == "81.2"
