"""A throw-away curve protocol, registered on import, shaped like the standard ones: curve ``.../all`` drops
each modality of each test sample with probability r, two mask draws per rate (like ``random_missing``'s
seeds); curve ``.../text`` drops only text, one draw. Rates 0.1, 0.25, 0.5, 0.8 are deliberately non-uniform.
Used by the report tests to get real severity curves from the runner; real protocols live in corruptions/."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from corruptions.base import Condition, Protocol
from corruptions.spec import FeatureStats
from harness.data import Batch, DatasetSpec
from harness.registry import PROTOCOLS

NAME = "test_random_drop"
RATES = (0.1, 0.25, 0.5, 0.8)


def _drop_at(rate: float, only: int | None):
    def apply(batch: Batch, generator: torch.Generator) -> Batch:
        keep = torch.rand(batch.present.shape, generator=generator, device=generator.device) >= rate
        if only is not None:
            keep[:, [j for j in range(keep.shape[1]) if j != only]] = True
        return batch.drop(keep.to(batch.present.device))

    return apply


@dataclass(frozen=True)
class RandomDrop(Protocol):
    """Each modality (or only text) of each sample removed independently with probability r (test only)."""

    name = NAME
    version = 1
    family = "removal"

    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        out = [Condition(f"all/r={r:g}/draw={d}", _drop_at(r, None), severity=r, curve=f"{NAME}/all")
               for r in RATES for d in (0, 1)]
        return out + [Condition(f"text/r={r:g}", _drop_at(r, 0), severity=r, curve=f"{NAME}/text") for r in RATES]


if NAME not in PROTOCOLS:
    PROTOCOLS.add(NAME, RandomDrop())
