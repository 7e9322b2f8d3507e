"""Small builders shared by the statistics tests: tidy records and a plain accuracy."""

from __future__ import annotations

import numpy as np

NAN = float("nan")


def record(method: str, seed: int, value: float, *, condition: str = "full", protocol: str = "fixed_pattern",
           metric: str = "acc2_non0", severity: float = NAN, curve: str | None = None) -> dict[str, object]:
    """One row of ``records.jsonl`` on dataset ``mosi``."""
    return {"dataset": "mosi", "method": method, "seed": seed, "protocol": protocol, "protocol_version": "1",
            "protocol_hash": "h", "condition": condition, "severity": severity, "curve": curve,
            "metric": metric, "value": value}


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Accuracy of class scores ``[N, C]`` (argmax) or of labels ``[N]``."""
    labels = pred.argmax(axis=1) if pred.ndim == 2 else pred
    return float(np.mean(labels == target))


def run_record(method: str, seed: int, condition: str, value: float, dataset: str = "mosi",
               metric: str = "acc2_non0", digest: str = "h1") -> dict:
    """One stored ``fixed_pattern`` record as a run directory holds it (with ``n`` and ``cell``)."""
    return {"dataset": dataset, "method": method, "seed": seed, "protocol": "fixed_pattern", "protocol_version": 1,
            "protocol_hash": digest, "condition": condition, "severity": None, "curve": None, "metric": metric,
            "value": value, "n": 10, "cell": f"{dataset}__{method}__seed{seed}"}
