"""Whole-modality removal protocols.

| protocol | conditions | reference |
|---|---|---|
| fixed_pattern v1 | ``full`` + every non-empty proper subset kept for all test samples | MMIN Table 3; ModalImmune Table 3 |
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch

from corruptions.base import Condition, Protocol
from harness.data import Batch, DatasetSpec
from harness.registry import PROTOCOLS

FULL = "full"


def pattern_name(available: tuple[str, ...], spec: DatasetSpec) -> str:
    """``full`` for all modalities, otherwise the available ones joined with ``+`` in the spec's order."""
    return FULL if len(available) == len(spec.modalities) else "+".join(available)


def keep_pattern(available: tuple[str, ...], spec: DatasetSpec):
    keep = torch.tensor([m in available for m in spec.modalities], dtype=torch.bool)

    def apply(batch: Batch, generator: torch.Generator) -> Batch:
        return batch.drop(keep)

    return apply


def patterns(spec: DatasetSpec) -> list[tuple[str, ...]]:
    """All non-empty subsets of the modalities, larger subsets first, each in the spec's order."""
    mods = spec.modalities
    return [c for k in range(len(mods), 0, -1) for c in combinations(mods, k)]


@dataclass(frozen=True)
class FixedPattern(Protocol):
    """Every non-empty subset of modalities available for all test samples, the rest removed (2^M - 1)."""

    name = "fixed_pattern"
    version = 1
    family = "removal"
    paper = "MMIN (Zhao et al., ACL 2021), Table 3; ModalImmune (Fu et al., 2026), Table 3"

    def conditions(self, spec: DatasetSpec) -> list[Condition]:
        return [Condition(pattern_name(p, spec), keep_pattern(p, spec)) for p in patterns(spec)]


PROTOCOLS.add(FixedPattern.name, FixedPattern())
