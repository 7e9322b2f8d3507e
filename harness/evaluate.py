"""Evaluate one trained model on the test split under every condition of every protocol, in large batches.

The test split is touched here and only here, once per trained model. Each condition's generator is derived
from (protocol, version, condition name) and lives on the CPU: identical for every method, seed and device,
so comparisons are paired and a GPU run sees the same corrupted data as a CPU run.

Batching: the corrupted copies of the test set (one per condition, each built by a pure function) are
concatenated into chunks of at most ``max_bytes`` of features (at least one condition per chunk) and each
chunk goes through ``model.predict`` once, which runs it in the method's ``eval_batch_size`` slices; the
predictions are split back per condition. A model is thus called in a few large forward passes instead of
one small pass per condition, and at most one chunk of copies is in memory at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol as TypingProtocol

import numpy as np
import torch
from torch import Tensor

from corruptions.base import Condition, Protocol
from corruptions.spec import FeatureStats
from harness.data import Batch, DatasetSpec
from harness.metrics import metrics_for
from harness.seeding import stable_seed, torch_generator

# Feature bytes per chunk of corrupted test copies (the concatenation briefly doubles it).
MAX_BYTES = {"cuda": 2 * 2**30, "cpu": 512 * 2**20}


class Predictor(TypingProtocol):
    def predict(self, batch: Batch) -> Tensor: ...


@dataclass(frozen=True)
class Evaluated:
    """Predictions of one model under one condition: ``pred`` float ``[N]`` or ``[N, C]``."""

    protocol: Protocol
    condition: Condition
    pred: np.ndarray


def expand(protocols: list[Protocol], spec: DatasetSpec,
           stats: FeatureStats | None = None) -> list[tuple[Protocol, Condition]]:
    """Every (protocol, condition) pair; raises ``ValueError`` before any training if one does not fit.

    ``stats`` are the training split's feature statistics (``FeatureStats.from_batch(data.train)``), needed by
    protocols whose corruption strength is relative to the data (noise).
    """
    pairs = [(p, c) for p in protocols for c in p.conditions(spec, stats)]
    seen: set[tuple[str, str]] = set()
    for p, c in pairs:
        if (p.name, c.name) in seen:
            raise ValueError(f"Protocol {p.name!r} yields the condition {c.name!r} twice")
        seen.add((p.name, c.name))
    return pairs


def condition_generator(protocol: Protocol, condition: Condition) -> torch.Generator:
    """The condition's CPU generator, seeded from (protocol name, version, condition name) only."""
    return torch_generator(stable_seed(protocol.name, protocol.version, condition.name), "cpu")


def nbytes(batch: Batch) -> int:
    return sum(v.numel() * v.element_size() for v in batch.x.values())


def evaluate(model: Predictor, test: Batch, pairs: list[tuple[Protocol, Condition]],
             max_bytes: int | None = None) -> list[Evaluated]:
    """Predictions under every condition, computed chunk by chunk over concatenated corrupted copies.

    ``max_bytes`` bounds the features of one chunk (default: 2 GiB on CUDA, 512 MiB otherwise).
    """
    budget = max_bytes if max_bytes is not None else MAX_BYTES.get(test.device.type, MAX_BYTES["cpu"])
    per_chunk = max(1, budget // max(1, nbytes(test)))
    n = len(test)
    out: list[Evaluated] = []
    for start in range(0, len(pairs), per_chunk):
        chunk = pairs[start:start + per_chunk]
        copies = [c.apply(test, condition_generator(p, c)) for p, c in chunk]
        big = Batch.cat(copies) if len(copies) > 1 else copies[0]
        del copies  # only the concatenation stays alive during the forward passes
        pred = model.predict(big).cpu().numpy()
        for k, (p, c) in enumerate(chunk):
            out.append(Evaluated(p, c, pred[k * n:(k + 1) * n]))
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
