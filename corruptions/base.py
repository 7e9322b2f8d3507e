"""Protocols: frozen, versioned definitions that expand into named evaluation conditions.

A *condition* is one way of presenting the test split to a trained model (a missing-modality pattern, a rate
with a mask seed, a noise level). Applying it is a pure function ``(batch, generator) -> new batch``: the input
is never modified and all randomness comes from the explicit generator, which the evaluator derives from the
protocol, its version and the condition name alone, so every method and every training seed sees the very
same corrupted test set (paired comparisons stay paired).

Versioning rule: any change to a protocol's semantics (which conditions exist, how a mask is drawn, what a
severity means) must bump its ``version``. Every record stores the protocol name, version and ``digest()``.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch

from harness.data import Batch, DatasetSpec

Apply = Callable[[Batch, torch.Generator], Batch]


@dataclass(frozen=True)
class Condition:
    """One evaluation condition. ``name`` is unique within its protocol and stable (``text+audio``,
    ``r=0.3/seed=1``); ``severity`` is the real x-value of a robustness curve (None for categorical
    conditions) and ``curve`` names the curve it belongs to."""

    name: str
    apply: Apply
    severity: float | None = None
    curve: str | None = None


@dataclass(frozen=True)
class Protocol(ABC):
    """Base of every protocol. Subclasses are frozen dataclasses whose fields are the protocol's parameters."""

    name: ClassVar[str]
    version: ClassVar[int]
    family: ClassVar[str]
    paper: ClassVar[str] = ""

    @abstractmethod
    def conditions(self, spec: DatasetSpec) -> list[Condition]:
        """The conditions for a dataset; raise ``ValueError`` when a parameter does not fit ``spec``."""

    def digest(self) -> str:
        """Short hash of the definition (name, version, parameters)."""
        blob = json.dumps({"name": self.name, "version": self.version, "params": asdict(self)},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def describe(self) -> str:
        doc = (type(self).__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""
