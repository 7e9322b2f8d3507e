"""Protocols: frozen, versioned definitions that expand into named evaluation conditions.

A *condition* is one way of presenting the test split to a trained model (a missing-modality pattern, a rate
with a mask seed, a noise level). Applying it is a pure function ``(batch, generator) -> new batch``: the input
is never modified and all randomness comes from the explicit generator, which the evaluator derives from the
protocol, its version and the condition name alone, so every method and every training seed sees the very
same corrupted test set (paired comparisons stay paired).

Versioning rule: any change to a protocol's semantics (which conditions exist, how a mask is drawn, what a
severity means, the default grid) must bump its ``version``; so must a change to a corruption function a
protocol uses. Every record stores the protocol name, version and ``digest()`` (a hash of name, version and
parameters), so numbers from different definitions are never silently mixed.

Severity convention (every protocol): ``Condition.severity`` is a real x-value where 0 means "no corruption"
and larger means more corrupted (a rate, a fraction, a noise-to-signal amplitude ratio, a number of steps),
never an index; categorical conditions (a fixed pattern) have ``severity=None``.

Data flow for corruptions that are relative to the data (noise at an SNR): the evaluator computes
:class:`~corruptions.spec.FeatureStats` from the *training* split and passes them to ``conditions``; a
protocol never sees a method and a method never sees a protocol.

Scored samples: a condition may score only some test samples (``Condition.evaluated``), e.g. a fixed pattern
cannot evaluate a sample that has none of the pattern's modalities even before removal. The mask is a
function of the clean test split alone, so it is the same for every method and seed (pairing holds); records
carry the number of scored samples as ``n``.

Held-out protocols (``Protocol.held_out``, the validation family) are for tuning on the validation split and
are never evaluated on the test split; the evaluator refuses to mix the two (``harness.evaluate.expand``).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch

from corruptions.spec import FeatureStats
from harness.data import Batch, DatasetSpec

Apply = Callable[[Batch, torch.Generator], Batch]
Rows = Callable[[Batch], torch.Tensor]  # clean batch -> bool [N], True for the samples a condition scores


@dataclass(frozen=True)
class Condition:
    """One evaluation condition. ``name`` is unique within its protocol and stable (``text+audio``,
    ``r=0.3/seed=1``); ``severity`` is the real x-value of a robustness curve (None for categorical
    conditions) and ``curve`` names the curve it belongs to; ``corruptions`` names the registered corruption
    functions it uses (the validation family must never appear in a test protocol). ``evaluated`` maps the
    *clean* test batch to bool ``[N]``, the samples the condition is scored on (None = all of them); the
    others are still passed through ``apply`` (batch shapes stay fixed) but their predictions are discarded."""

    name: str
    apply: Apply
    severity: float | None = None
    curve: str | None = None
    corruptions: tuple[str, ...] = ()
    evaluated: Rows | None = None


@dataclass(frozen=True)
class Protocol(ABC):
    """Base of every protocol. Subclasses are frozen dataclasses whose fields are the protocol's parameters."""

    name: ClassVar[str]
    version: ClassVar[int]
    family: ClassVar[str]
    paper: ClassVar[str] = ""
    # True for a tuning family (validation split only): the evaluator refuses it on the test split, and refuses
    # test protocols when tuning, so tuning never sees a test corruption and a test report never a tuning one.
    held_out: ClassVar[bool] = False
    # How reports name it (empty: the registry name), and the x-axis title of its severity curves, keyed by a
    # "/"-part of the curve's name ("gaussian" in "noise/gaussian/all"). Presentation only: not in the digest.
    label: ClassVar[str] = ""
    severity_units: ClassVar[Mapping[str, str]] = {}

    @abstractmethod
    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        """The conditions for a dataset; raise ``ValueError`` when a parameter does not fit ``spec``.

        ``stats`` are the training split's feature statistics (needed by data-relative corruptions only).
        """

    def unsupported(self, spec: DatasetSpec) -> str | None:
        """Why this protocol cannot run on ``spec`` at all (e.g. it needs sequences), or None.

        The runner skips such a protocol for that dataset when it was selected implicitly (``all``, a glob)
        and raises before training when it was named explicitly.
        """
        return None

    def severity_label(self, curve: str) -> str:
        """The axis title of ``curve``'s severity values (its ``severity_units`` entry), else ``severity``."""
        return next((self.severity_units[p] for p in curve.split("/") if p in self.severity_units), "severity")

    def condition_label(self, name: str) -> str:
        """How a reader sees a condition or curve name (:func:`readable`); protocols may override it."""
        return readable(name)

    def require_supported(self, spec: DatasetSpec) -> None:
        reason = self.unsupported(spec)
        if reason:
            raise ValueError(reason)

    def digest(self) -> str:
        """Short hash of the definition (name, version, parameters)."""
        blob = json.dumps({"name": self.name, "version": self.version, "params": asdict(self)},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def describe(self) -> str:
        doc = (type(self).__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""


def readable(name: str) -> str:
    """A condition or curve name for readers: ``text+audio`` -> ``text + audio``, ``full`` -> ``complete``,
    ``gaussian/all`` -> ``gaussian, all modalities``, ``modality=text`` -> ``text``."""
    words = {"full": "complete", "all": "all modalities", "modality=all": "all modalities"}
    parts = [words.get(p, p.removeprefix("modality=")) for p in name.split("/")]
    return ", ".join(parts).replace("+", " + ")


def sequence_problem(protocol: str, spec: DatasetSpec, modalities: tuple[str, ...] | None) -> str | None:
    """The reason a frame-level protocol cannot run when a targeted modality has T = 1, else None."""
    targets = spec.modalities if modalities is None else modalities
    flat = [f"{m} (T = 1)" for m in targets if m in spec.modalities and spec.seq_lens[spec.index(m)] < 2]
    if flat:
        return f"{protocol} needs sequences (T > 1); dataset {spec.name!r} has utterance-level features for " \
               f"{', '.join(flat)}"
    return None
