"""Model selection: one policy per run, applied to every method alike, on the validation split only.

``--select`` chooses which inputs the validation score is computed on:

- ``complete`` (default): the validation split as it is (all of its modalities);
- ``incomplete``: the mean over the validation split's incomplete fixed patterns (every non-empty proper subset
  of the modalities kept, ``2^M - 2`` of them), MMIN's protocol (Zhao et al., ACL 2021);
- ``all``: the mean over every non-empty pattern, the complete one included (``2^M - 1``).

Under a pattern, a sample that has none of the pattern's modalities in the data is left out of that pattern's
score (as the ``fixed_pattern`` protocol does), so no score is computed from an emptied input. ``--select-metric``
names the metric (``auto``: MAE for regression, UA for classification); its direction comes from the metric.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch
from torch import Tensor

import harness.metrics  # noqa: F401  (registers the metrics a selection is checked against)
from harness.data import Batch
from harness.registry import METRICS

POLICIES = ("complete", "incomplete", "all")
POLICY_TEXT = {"complete": "complete inputs", "incomplete": "mean over incomplete patterns",
               "all": "mean over all patterns"}


@dataclass(frozen=True)
class Selection:
    """A run's selection rule: ``policy`` (one of :data:`POLICIES`) and ``metric`` (``auto`` or a metric name)."""

    policy: str = "complete"
    metric: str = "auto"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"--select {self.policy!r} is invalid; valid: {', '.join(POLICIES)}")
        if self.metric != "auto" and self.metric not in METRICS:
            raise ValueError(f"--select-metric: {METRICS.unknown_message(self.metric)} (or 'auto')")

    def metric_for(self, task: str) -> str:
        """The concrete metric for a dataset task; a metric of another task is an error."""
        name = self.metric if self.metric != "auto" else ("mae" if task == "regression" else "ua")
        spec = METRICS.get(name)
        if spec.task != task:
            raise ValueError(f"--select-metric {name} is a {spec.task} metric but the dataset task is {task}; "
                             f"use --select-metric auto or a {task} metric")
        return name

    def describe(self, task: str) -> str:
        return f"validation {self.metric_for(task)}, {POLICY_TEXT[self.policy]}"


def patterns(n_mod: int, policy: str) -> Tensor:
    """Bool ``[P, M]`` keep-patterns of ``policy``: ``[[True]*M]`` for complete; smaller subsets first otherwise."""
    if policy == "complete":
        return torch.ones(1, n_mod, dtype=torch.bool)
    top = n_mod + 1 if policy == "all" else n_mod
    rows = [[j in c for j in range(n_mod)] for k in range(1, top) for c in combinations(range(n_mod), k)]
    return torch.tensor(rows, dtype=torch.bool).view(-1, n_mod)


class Scorer:
    """``scorer(model) -> float``: the selection metric of ``model`` on ``valid`` under ``policy``.

    The patterns' copies of the split are concatenated once, so each score is one ``predict`` call; the value is
    the mean over patterns of the metric on each pattern's scored samples.
    """

    def __init__(self, valid: Batch, policy: str, metric: str) -> None:
        self.metric, self.policy, self.fn = metric, policy, METRICS.get(metric)
        keep = patterns(valid.present.shape[1], policy).to(valid.present.device)
        copies, self.rows = [], []
        for p in keep:
            rows = (valid.present & p).any(1)
            copies.append(valid.drop(p).index(rows.nonzero().squeeze(1)))
            self.rows.append(int(rows.sum()))
        self.batch = Batch.cat(copies) if len(copies) > 1 else copies[0]
        self.target = self.batch.y.cpu().numpy()

    def from_predictions(self, pred: np.ndarray) -> float:
        """The score from predictions of ``self.batch`` (``[N']`` or ``[N', C]``)."""
        values, start = [], 0
        for n in self.rows:
            if n:
                values.append(self.fn(pred[start:start + n], self.target[start:start + n]))
            start += n
        return float(np.mean(values)) if values else float("nan")

    def __call__(self, model: Callable) -> float:
        return self.from_predictions(model.predict(self.batch).cpu().numpy())
