"""Evaluate one trained model on the test split under every condition of every protocol.

The test split is touched here and only here, once per trained model. Each condition's generator is derived
from (protocol, version, condition name): identical for every method and seed, so comparisons are paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corruptions.base import Condition, Protocol
from harness.data import Batch, DatasetSpec
from harness.metrics import metrics_for
from harness.seeding import stable_seed, torch_generator


@dataclass(frozen=True)
class Evaluated:
    """Predictions of one model under one condition: ``pred`` float ``[N]`` or ``[N, C]``."""

    protocol: Protocol
    condition: Condition
    pred: np.ndarray


def expand(protocols: list[Protocol], spec: DatasetSpec) -> list[tuple[Protocol, Condition]]:
    """Every (protocol, condition) pair; raises ``ValueError`` before any training if one does not fit."""
    pairs = [(p, c) for p in protocols for c in p.conditions(spec)]
    seen: set[tuple[str, str]] = set()
    for p, c in pairs:
        if (p.name, c.name) in seen:
            raise ValueError(f"Protocol {p.name!r} yields the condition {c.name!r} twice")
        seen.add((p.name, c.name))
    return pairs


def condition_generator(protocol: Protocol, condition: Condition, device: str):
    return torch_generator(stable_seed(protocol.name, protocol.version, condition.name), device)


def evaluate(model, test: Batch, pairs: list[tuple[Protocol, Condition]]) -> list[Evaluated]:
    """Predictions under every condition (``model.predict`` runs in large eval batches)."""
    out = []
    for protocol, condition in pairs:
        gen = condition_generator(protocol, condition, str(test.device.type))
        batch = condition.apply(test, gen)
        out.append(Evaluated(protocol, condition, model.predict(batch).cpu().numpy()))
    return out


def to_records(results: list[Evaluated], target: np.ndarray, spec: DatasetSpec, base: dict) -> list[dict]:
    """Tidy rows: one per (condition, metric), values as numbers; ``base`` holds dataset/method/seed."""
    rows = []
    for r in results:
        for metric in metrics_for(spec.task):
            rows.append({
                **base,
                "protocol": r.protocol.name,
                "protocol_version": r.protocol.version,
                "protocol_hash": r.protocol.digest(),
                "condition": r.condition.name,
                "severity": r.condition.severity,
                "curve": r.condition.curve,
                "metric": metric.name,
                "value": metric(r.pred, target),
                "n": int(len(target)),
            })
    return rows


def prediction_arrays(results: list[Evaluated], target: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The ``.npz`` payload: ``conditions`` [K] ("protocol/condition"), ``pred`` [K, N] or [K, N, C], targets, ids."""
    return {
        "conditions": np.array([f"{r.protocol.name}/{r.condition.name}" for r in results]),
        "pred": np.stack([r.pred for r in results]).astype(np.float32),
        "target": target,
        "ids": ids.astype(str),
    }
