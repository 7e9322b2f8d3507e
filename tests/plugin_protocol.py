"""A throw-away curve protocol, registered on import: drop each modality of each test sample with probability
``rate`` (severities 0.1, 0.25, 0.5, 0.8, deliberately non-uniform). Used by the report tests to get real
severity curves from the runner; the real missing-rate protocols live in corruptions/."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from corruptions.base import Condition, Protocol
from corruptions.spec import FeatureStats
from harness.data import Batch, DatasetSpec
from harness.registry import PROTOCOLS

NAME = "test_random_drop"
RATES = (0.1, 0.25, 0.5, 0.8)


def _drop_at(rate: float):
    def apply(batch: Batch, generator: torch.Generator) -> Batch:
        draw = torch.rand(batch.present.shape, generator=generator, device=generator.device)
        return batch.drop(draw.to(batch.present.device) >= rate)

    return apply


@dataclass(frozen=True)
class RandomDrop(Protocol):
    """Each modality of each sample removed independently with probability r (test only)."""

    name = NAME
    version = 1
    family = "removal"

    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        return [Condition(f"r={r:g}", _drop_at(r), severity=r, curve="random_drop") for r in RATES]


if NAME not in PROTOCOLS:
    PROTOCOLS.add(NAME, RandomDrop())
