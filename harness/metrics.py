"""Metrics: plain functions ``fn(pred, target) -> float`` with their metadata in one registered spec.

Sentiment regression follows MMSA's ``metricsTop`` semantics (see shared/reference/anchors.md §1), with the
convention in the name so that numbers from different conventions are never mixed:

- ``acc2_has0``/``f1_has0``: negative vs non-negative over all samples (``>= 0``; a 0 label counts positive).
- ``acc2_non0``/``f1_non0``: negative vs positive over samples with a non-zero label (``> 0``; a prediction of
  exactly 0 counts as negative). An unqualified "Acc2/F1" in the literature means this one.
- ``acc7``/``acc5``: ``round(clip(p, ±3|±2)) == round(clip(t, ±3|±2))`` with round-half-to-even (``numpy.round``).
- ``mae`` on unclipped values; ``corr`` = Pearson r (NaN when either side is constant).
- F1 is the support-weighted F1 of (true, predicted) in that order (older MMSA/MulT swapped them).

Classification (IEMOCAP): ``wa`` = accuracy, ``ua`` = mean per-class recall (UAR), ``f1_macro``,
``f1_weighted``; ``pred`` holds class scores ``[N, C]`` and the predicted class is their argmax.

Values are stored unrounded as fractions (0.81, not 81.0); ``scale`` and ``fmt`` are for display only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.registry import METRICS

MetricFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class MetricSpec:
    """A metric and how to read it. ``task`` says which datasets it applies to; ``label`` is its name in figures
    and paper tables (reports fall back to ``name`` when it is empty)."""

    name: str
    fn: MetricFn
    task: str
    higher_is_better: bool
    scale: float = 100.0
    fmt: str = "{:.1f}"
    description: str = ""
    label: str = ""

    def __call__(self, pred: np.ndarray, target: np.ndarray) -> float:
        return float(self.fn(np.asarray(pred), np.asarray(target)))

    def display(self, value: float) -> str:
        return self.fmt.format(value * self.scale)


def _metric(name: str, task: str, higher: bool, scale: float = 100.0, fmt: str = "{:.1f}", label: str = ""):
    def add(fn: MetricFn) -> MetricFn:
        doc = (fn.__doc__ or "").strip().splitlines()
        METRICS.add(name, MetricSpec(name, fn, task, higher, scale, fmt, doc[0] if doc else "", label))
        return fn

    return add


def weighted_f1(true: np.ndarray, pred: np.ndarray, average: str = "weighted") -> float:
    """F1 over the classes present in ``true`` or ``pred``; ``average`` is 'weighted' (by true support) or 'macro'."""
    true, pred = np.asarray(true), np.asarray(pred)
    if true.size == 0:
        return float("nan")
    labels = np.union1d(true, pred)
    f1s, support = [], []
    for c in labels:
        tp = np.sum((pred == c) & (true == c))
        fp = np.sum((pred == c) & (true != c))
        fn = np.sum((pred != c) & (true == c))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
        support.append(np.sum(true == c))
    f1s_a, support_a = np.asarray(f1s, dtype=float), np.asarray(support, dtype=float)
    if average == "macro":
        return float(f1s_a.mean())
    return float(np.sum(f1s_a * support_a) / support_a.sum())


@_metric("acc2_has0", "regression", True, label="Acc-2 (has-0)")
def acc2_has0(p: np.ndarray, t: np.ndarray) -> float:
    """Binary accuracy, negative vs non-negative (0 labels count positive), all samples."""
    return float(np.mean((p >= 0) == (t >= 0))) if t.size else float("nan")


@_metric("f1_has0", "regression", True, label="F1 (has-0)")
def f1_has0(p: np.ndarray, t: np.ndarray) -> float:
    """Weighted F1 of (t >= 0) vs (p >= 0), all samples."""
    return weighted_f1(t >= 0, p >= 0)


@_metric("acc2_non0", "regression", True, label="Acc-2 (non-0)")
def acc2_non0(p: np.ndarray, t: np.ndarray) -> float:
    """Binary accuracy, negative vs positive, samples with t != 0 only; p == 0 counts negative."""
    nz = t != 0
    return float(np.mean((p[nz] > 0) == (t[nz] > 0))) if nz.any() else float("nan")


@_metric("f1_non0", "regression", True, label="F1 (non-0)")
def f1_non0(p: np.ndarray, t: np.ndarray) -> float:
    """Weighted F1 of (t > 0) vs (p > 0), samples with t != 0 only."""
    nz = t != 0
    return weighted_f1(t[nz] > 0, p[nz] > 0)


@_metric("acc7", "regression", True, label="Acc-7")
def acc7(p: np.ndarray, t: np.ndarray) -> float:
    """7-class accuracy: round-half-even of values clipped to [-3, 3]."""
    return float(np.mean(np.round(np.clip(p, -3, 3)) == np.round(np.clip(t, -3, 3)))) if t.size else float("nan")


@_metric("acc5", "regression", True, label="Acc-5")
def acc5(p: np.ndarray, t: np.ndarray) -> float:
    """5-class accuracy: round-half-even of values clipped to [-2, 2]."""
    return float(np.mean(np.round(np.clip(p, -2, 2)) == np.round(np.clip(t, -2, 2)))) if t.size else float("nan")


@_metric("mae", "regression", False, scale=1.0, fmt="{:.3f}", label="MAE")
def mae(p: np.ndarray, t: np.ndarray) -> float:
    """Mean absolute error on unclipped values."""
    return float(np.mean(np.abs(p - t))) if t.size else float("nan")


@_metric("corr", "regression", True, scale=1.0, fmt="{:.3f}", label="Corr")
def corr(p: np.ndarray, t: np.ndarray) -> float:
    """Pearson correlation; NaN when predictions or labels are constant."""
    if t.size < 2 or np.std(p) == 0 or np.std(t) == 0:
        return float("nan")
    return float(np.corrcoef(p, t)[0, 1])


def _classes(scores: np.ndarray) -> np.ndarray:
    return scores.argmax(axis=1) if scores.ndim == 2 else scores.astype(int)


@_metric("wa", "classification", True, label="WA")
def wa(scores: np.ndarray, t: np.ndarray) -> float:
    """Weighted accuracy (overall accuracy), the speech-emotion convention."""
    return float(np.mean(_classes(scores) == t)) if t.size else float("nan")


@_metric("ua", "classification", True, label="UA")
def ua(scores: np.ndarray, t: np.ndarray) -> float:
    """Unweighted accuracy: mean per-class recall over the dataset's class list (UAR).

    The class list is the width C of ``scores [N, C]`` (the dataset's classes), not the classes that happen to
    occur in ``t``: when a class has no sample in ``t`` its recall is undefined, and so is UA over the class
    list, which is NaN rather than a mean over fewer classes that looks like the same number (``run.json``
    records each split's class counts, so a report can say which class is absent). With class indices
    instead of scores, the classes are those in ``t`` (nothing else is known).
    """
    pred = _classes(scores)
    classes = np.arange(scores.shape[1]) if scores.ndim == 2 else np.unique(t)
    if t.size == 0 or any(not np.any(t == c) for c in classes):
        return float("nan")
    return float(np.mean([np.mean(pred[t == c] == c) for c in classes]))


@_metric("f1_macro", "classification", True, label="macro F1")
def f1_macro(scores: np.ndarray, t: np.ndarray) -> float:
    """Macro-averaged F1."""
    return weighted_f1(t, _classes(scores), average="macro")


@_metric("f1_weighted", "classification", True, label="weighted F1")
def f1_weighted(scores: np.ndarray, t: np.ndarray) -> float:
    """Support-weighted F1."""
    return weighted_f1(t, _classes(scores))


def metrics_for(task: str) -> list[MetricSpec]:
    """Every registered metric that applies to ``task``, in registration order."""
    return [spec for _, spec in METRICS.entries() if spec.task == task]


def compute_all(task: str, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {spec.name: spec(pred, target) for spec in metrics_for(task)}
