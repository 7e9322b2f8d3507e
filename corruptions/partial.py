"""Partial corruption: a chosen corruption recipe applied to a fraction of the test samples only.

| protocol | conditions (names) | severity (0 = clean) | reference |
|---|---|---|---|
| partial_corruption v1 | ``light/frac=0.3``, ``heavy/frac=0.6`` | fraction of samples corrupted | ModalImmune Table 6 |

ModalImmune (Fu et al., 2026, §4.8, Table 6) corrupts "a fraction" of the MOSI test samples with visual blur
and impulse noise, additive background audio noise, and text perturbations, without giving the fraction or
severities. mibench's choice (ModalImmune gap #11): light = 30 %, heavy = 60 % of the samples, each chosen
sample getting every step of the recipe, in order:

| modality | step | ModalImmune's wording |
|---|---|---|
| vision | ``temporal_smoothing(window=3)`` then ``gaussian_noise(snr_db=20)`` | blur |
| vision | ``impulse_noise(rate=0.05)`` | impulse noise |
| audio | ``gaussian_noise(snr_db=10)`` | additive background noise |
| text | ``temporal_shuffle(fraction=0.1)`` | token shuffles (character errors need raw text) |

Exactly ``round(fraction * N)`` samples are chosen (round half to even) by one ``randperm`` of the generator;
the other samples are returned untouched. A level's fraction is in (0, 1]: 0 would be the clean test set under
another name, while 1 (every sample gets the recipe) is the meaningful end of the light/heavy scale, so it
is valid, unlike a rate of 1 (see ``corruptions.spec``). Any registered corruptions can form the recipe (``Step``).
Because the default recipe shuffles text steps, it needs sequences (skipped or raising on T = 1 datasets).

Versioning rule (``corruptions.base``): changing a protocol's semantics (its conditions, their names, how masks
are drawn, what a severity means, its default grid, or a corruption it uses) requires bumping its ``version``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from corruptions.base import Apply, Condition, Protocol
from corruptions.spec import FeatureStats, Range, fmt
from harness.data import Batch, DatasetSpec
from harness.registry import CORRUPTIONS, PROTOCOLS

FRACTION = Range(0.0, 1.0, lo_open=True)


@dataclass(frozen=True)
class Step:
    """One corruption of a recipe: a registered corruption name and its parameters as (key, value) pairs."""

    corruption: str
    params: tuple[tuple[str, Any], ...] = ()


MODALIMMUNE_T6: tuple[Step, ...] = (
    Step("temporal_smoothing", (("window", 3), ("modalities", ("vision",)))),
    Step("gaussian_noise", (("snr_db", 20.0), ("modalities", ("vision",)))),
    Step("impulse_noise", (("rate", 0.05), ("modalities", ("vision",)))),
    Step("gaussian_noise", (("snr_db", 10.0), ("modalities", ("audio",)))),
    Step("temporal_shuffle", (("fraction", 0.1), ("modalities", ("text",)))),
)


def merge_rows(base: Batch, rows: torch.Tensor, part: Batch) -> Batch:
    """A copy of ``base`` whose rows ``rows`` (int64 ``[K]``) are replaced by ``part`` (K samples)."""

    def put(full: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        out = full.clone()
        out[rows] = sub
        return out

    return replace(base, x={m: put(v, part.x[m]) for m, v in base.x.items()},
                   lengths={m: put(v, part.lengths[m]) for m, v in base.lengths.items()},
                   present=put(base.present, part.present))


def on_fraction(fraction: float, steps: list[Apply]) -> Apply:
    """``apply`` that corrupts exactly ``round(fraction * N)`` random samples with ``steps`` in order."""

    def apply(batch: Batch, generator: torch.Generator) -> Batch:
        n = len(batch)
        k = int(torch.round(torch.tensor(fraction * n, dtype=torch.float64)))
        rows = torch.randperm(n, generator=generator, device=generator.device)[:k].sort().values.to(batch.device)
        part = batch.index(rows)
        for step in steps:
            part = step(part, generator)
        return merge_rows(batch, rows, part)

    return apply


@dataclass(frozen=True)
class PartialCorruption(Protocol):
    """A corruption recipe applied to a fraction of test samples only (light / heavy)."""

    name = "partial_corruption"
    version = 1
    family = "partial"
    label = "partial corruption"
    severity_units = {"partial_corruption": "share of test samples corrupted"}
    paper = "ModalImmune (Fu et al., 2026), Table 6 (fractions and severities: mibench's choice, gap #11)"

    recipe: tuple[Step, ...] = MODALIMMUNE_T6
    levels: tuple[tuple[str, float], ...] = (("light", 0.3), ("heavy", 0.6))

    def __post_init__(self) -> None:
        if not self.recipe or not self.levels:
            raise ValueError("partial_corruption: recipe and levels must be non-empty")
        for label, f in self.levels:
            if f not in FRACTION or not label or "/" in label:
                raise ValueError(f"partial_corruption.levels: ({label!r}, {f!r}) is invalid; valid: a label "
                                 f"without '/' and a fraction in {FRACTION}")
        if len({f for _, f in self.levels}) != len(self.levels) or len(dict(self.levels)) != len(self.levels):
            raise ValueError(f"partial_corruption.levels: labels and fractions must be distinct, got {self.levels}")
        for step in self.recipe:
            CORRUPTIONS.get(step.corruption)  # unknown name -> error with suggestions

    def unsupported(self, spec: DatasetSpec) -> str | None:
        for step in self.recipe:
            c = CORRUPTIONS.get(step.corruption)
            given = dict(step.params).get("modalities")
            mods = spec.modalities if given is None else given
            flat = [m for m in mods if m in spec.modalities and spec.seq_lens[spec.index(m)] < 2]
            if c.sequence_only and flat:
                return (f"partial_corruption: recipe step {c.name} needs sequences (T > 1); dataset {spec.name!r} "
                        f"has T = 1 for {flat}")
        return None

    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        self.require_supported(spec)
        steps, names = [], []
        for step in self.recipe:
            c = CORRUPTIONS.get(step.corruption)
            if c.needs_stats and stats is None:
                raise ValueError(f"partial_corruption: step {c.name} needs the training split's feature "
                                 "statistics (stats=FeatureStats.from_batch(train))")
            extra = {"stats": stats} if c.needs_stats else {}
            steps.append(c.bind(spec, **dict(step.params), **extra))
            names.append(c.name)
        return [Condition(f"{label}/frac={fmt(f)}", on_fraction(f, steps), severity=float(f), curve=self.name,
                          corruptions=tuple(dict.fromkeys(names))) for label, f in self.levels]


PROTOCOLS.add(PartialCorruption.name, PartialCorruption())
