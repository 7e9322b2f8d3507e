"""Evaluate one trained model on the test split under every condition of every protocol, in large batches.

The test split is touched here and only here, once per trained model. Each condition's generator is derived
from (protocol, version, condition name) and lives on the CPU: identical for every method, seed and device,
so comparisons are paired and a GPU run sees the same corrupted data as a CPU run.

Batching: the corrupted copies of the test set (one per condition, each built by a pure function) are
concatenated into chunks of at most ``max_bytes`` of features (at least one condition per chunk) and each
chunk goes through ``model.predict`` once, which runs it in the method's ``eval_batch_size`` slices; the
predictions are split back per condition. A model is thus called in a few large forward passes instead of
one small pass per condition, and at most one chunk of copies is in memory at a time.

Scored samples: a condition may score only some samples (``Condition.evaluated``, a function of the clean
test split, e.g. a fixed pattern leaves out samples that have none of its modalities). The metric of a record
is computed over those samples and ``n`` counts them; the stored predictions of the others are NaN, and the
``evaluated`` array of the ``.npz`` says which are which. A condition that scores no sample gets NaN values
with ``n = 0`` (logged), never a number computed from samples it cannot evaluate.

Held-out protocols (the validation family) never run on the test split, and tuning never runs a test
protocol: :func:`expand` refuses to mix them (``held_out`` selects which kind it accepts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol as TypingProtocol

import numpy as np
import torch
from torch import Tensor

from corruptions.base import Condition, Protocol
from corruptions.spec import FeatureStats
from harness.data import Batch, DatasetSpec
from harness.metrics import metrics_for
from harness.registry import CORRUPTIONS, PROTOCOLS
from harness.seeding import stable_seed, torch_generator

log = logging.getLogger(__name__)

# Feature bytes per chunk of corrupted test copies (the concatenation briefly doubles it).
MAX_BYTES = {"cuda": 2 * 2**30, "cpu": 512 * 2**20}


class Predictor(TypingProtocol):
    def predict(self, batch: Batch) -> Tensor: ...


@dataclass(frozen=True)
class Evaluated:
    """Predictions of one model under one condition: ``pred`` float ``[N]`` or ``[N, C]``, NaN on the samples the
    condition does not score; ``rows`` bool ``[N]`` marks the scored samples (None = all)."""

    protocol: Protocol
    condition: Condition
    pred: np.ndarray
    rows: np.ndarray | None = field(default=None)

    @property
    def scored(self) -> np.ndarray:
        return np.ones(len(self.pred), dtype=bool) if self.rows is None else self.rows


def check_split_use(pairs: list[tuple[Protocol, Condition]], held_out: bool) -> None:
    """Refuse a held-out protocol (or corruption) on the test split and a test one when tuning (module docstring)."""
    tuning = sorted(n for n, p in PROTOCOLS.entries() if p.held_out)
    for p, c in pairs:
        if p.held_out and not held_out:
            raise ValueError(
                f"Protocol {p.name!r} is a held-out tuning family (family {p.family!r}): it is used on the validation "
                "split only and is never evaluated on the test split, so no test report uses a tuning corruption. "
                "Remove it from --protocols (a glob such as '*' also matches it; 'all' never does).")
        if not p.held_out and held_out:
            raise ValueError(f"Protocol {p.name!r} is a test protocol: tuning may only use the held-out protocols "
                             f"{tuning}, so tuning never sees a test corruption")
        mixed = [k for k in c.corruptions if k in CORRUPTIONS and CORRUPTIONS.get(k).held_out != held_out]
        if mixed:
            kind = "held-out (tuning)" if not held_out else "test"
            raise ValueError(f"Protocol {p.name!r}, condition {c.name!r} uses the {kind} corruption(s) {mixed}; "
                             "test protocols and the held-out validation family must not share corruptions")


def expand(protocols: list[Protocol], spec: DatasetSpec, stats: FeatureStats | None = None, *,
           held_out: bool = False) -> list[tuple[Protocol, Condition]]:
    """Every (protocol, condition) pair; raises ``ValueError`` before any training if one does not fit.

    ``stats`` are the training split's feature statistics (``FeatureStats.from_batch(data.train)``), needed by
    protocols whose corruption strength is relative to the data (noise). ``held_out=False`` (the test split)
    accepts test protocols only; ``held_out=True`` (tuning on the validation split) only held-out ones.
    """
    pairs = [(p, c) for p in protocols for c in p.conditions(spec, stats)]
    check_split_use(pairs, held_out)
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


def scored_rows(condition: Condition, test: Batch) -> np.ndarray | None:
    """bool ``[N]`` of the samples ``condition`` scores (from the clean test split), or None for all of them."""
    if condition.evaluated is None:
        return None
    rows = condition.evaluated(test)
    if rows.shape != (len(test),) or rows.dtype != torch.bool:
        raise ValueError(f"condition {condition.name!r}: evaluated() must return bool [{len(test)}], "
                         f"got {rows.dtype} {tuple(rows.shape)}")
    return None if bool(rows.all()) else rows.cpu().numpy()


def masked(pred: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """``pred`` with NaN on the unscored samples, so no consumer can use a prediction the condition discards."""
    if rows is None:
        return pred
    out = pred.astype(np.float32, copy=True)
    out[~rows] = np.nan
    return out


def evaluate(model: Predictor, test: Batch, pairs: list[tuple[Protocol, Condition]],
             max_bytes: int | None = None) -> list[Evaluated]:
    """Predictions under every condition, computed chunk by chunk over concatenated corrupted copies.

    ``max_bytes`` bounds the features of one chunk (default: 2 GiB on CUDA, 512 MiB otherwise).
    """
    return evaluate_members(lambda b: model.predict(b).unsqueeze(0), 1, test, pairs, max_bytes)[0]


def evaluate_members(predict: Callable[[Batch], Tensor], members: int, test: Batch,
                     pairs: list[tuple[Protocol, Condition]], max_bytes: int | None = None) -> list[list[Evaluated]]:
    """:func:`evaluate` for ``members`` models at once (a stacked seed group): ``predict(batch)`` returns
    ``[members, N, ...]``; the result has one list of :class:`Evaluated` per member. Every member sees the very
    same corrupted copies (one generator per condition), so comparisons stay paired."""
    budget = max_bytes if max_bytes is not None else MAX_BYTES.get(test.device.type, MAX_BYTES["cpu"])
    per_chunk = max(1, budget // max(1, nbytes(test) * members))
    n = len(test)
    out: list[list[Evaluated]] = [[] for _ in range(members)]
    for start in range(0, len(pairs), per_chunk):
        chunk = pairs[start:start + per_chunk]
        copies = [c.apply(test, condition_generator(p, c)) for p, c in chunk]
        big = Batch.cat(copies) if len(copies) > 1 else copies[0]
        del copies  # only the concatenation stays alive during the forward passes
        pred = predict(big).cpu().numpy()
        for k, (p, c) in enumerate(chunk):
            rows = scored_rows(c, test)
            if rows is not None:
                log.info("%s/%s scores %d of %d test samples (the others cannot be evaluated under it)",
                         p.name, c.name, int(rows.sum()), n)
            for member in range(members):
                out[member].append(Evaluated(p, c, masked(pred[member, k * n:(k + 1) * n], rows), rows))
    return out


def to_records(results: list[Evaluated], target: np.ndarray, spec: DatasetSpec, base: dict) -> list[dict]:
    """Tidy rows: one per (condition, metric), values as numbers; ``base`` holds dataset/method/seed.

    ``value`` is computed over the condition's scored samples and ``n`` counts them (NaN and 0 when none).
    """
    rows = []
    for r in results:
        scored = r.scored
        n = int(scored.sum())
        if n == 0:
            log.warning("%s/%s scores no test sample: its values are NaN", r.protocol.name, r.condition.name)
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
                "value": metric(r.pred[scored], target[scored]) if n else float("nan"),
                "n": n,
            })
    return rows


def prediction_arrays(results: list[Evaluated], target: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The ``.npz`` payload: ``conditions`` [K] ("protocol/condition"), ``pred`` [K, N] or [K, N, C] (NaN where
    not scored), ``evaluated`` bool [K, N] (the scored samples of each condition), targets, ids."""
    return {
        "conditions": np.array([f"{r.protocol.name}/{r.condition.name}" for r in results]),
        "pred": np.stack([r.pred for r in results]).astype(np.float32),
        "evaluated": np.stack([r.scored for r in results]),
        "target": target,
        "ids": ids.astype(str),
    }
