"""Whole-modality removal protocols.

| protocol | conditions (names) | severity | reference |
|---|---|---|---|
| fixed_pattern v2 | ``full`` + each non-empty proper subset kept (``text+audio``, ``vision``) | None | MMIN Table 3 |
| random_missing v1 | ``r=0.3/seed=1``: rates x mask seeds | r | IMDer-style independent drops |
| missing_rate v1 | ``r=0.3/seed=1``: rates x mask seeds | r (realised exactly) | GCNet/CPM-Net, ModalImmune Table 4 |

``fixed_pattern`` (MMIN, Zhao et al., ACL 2021, Table 3; ModalImmune Table 3): every non-empty subset of
modalities is available for all test samples and the rest removed (2^M - 1 conditions). Reports show the
per-pattern values and their mean over the incomplete patterns (``mean (incomplete)``, computed per seed from
these records by ``reports``/``harness.robustness``; no derived record is stored).

Natural missingness (v2): a pattern means "at most these modalities": the others are removed, and a sample
keeps whichever of the pattern's modalities it has. A sample with *none* of them even before removal (real
data may lack modalities, see the npz ``present`` mask) cannot be evaluated under that pattern: it is left
out of the condition's metric (``Condition.evaluated``; the record's ``n`` counts the scored samples) rather
than fed to a model as an all-missing row or scored with modalities the pattern excludes. The mask depends
on the clean test split only, so every method and seed is scored on the same samples. v1 scored such samples
with no modality at all; on data where every sample has every modality, v1 and v2 give the same numbers.

``random_missing`` (GCNet/CPM-Net, Lian et al., TPAMI 2023; IMDer, Wang et al., NeurIPS 2023; ModalImmune
Table 4 and gap #10): each modality of each test sample is removed independently with probability r, at
least one modality kept per sample (a row that would keep none of *its* modalities is redrawn, so every
sample is scored, natural missingness included). Default r in {0.1, ..., 0.7} and 3 mask seeds. Because of the
conditioning, r is the drop probability before it, not the missing fraction: at r = 0.7 and M = 3 only 0.54 of
the slots are missing and about a third of the samples keep two or more modalities. It is therefore *not*
comparable with GCNet/CPM-Net tables; it stays (unchanged name and version) for runs that used it.

``missing_rate`` (GCNet, Lian et al., TPAMI 2023, and CPM-Net, Zhang et al., CVPR 2019/TPAMI 2020: the
``random_mask``/``get_sn`` masks; ModalImmune Table 4): the realised missing fraction over the test split is r
(``exact_modality_missing``), at least one modality kept per sample, exactly one once r >= (M - 1)/M. Rates
0.1–0.7 (GCNet asserts r <= 0.7 for 3 views), 3 mask draws; the mean over rates is the papers' "Avg." row.

Versioning rule (``corruptions.base``): changing a protocol's semantics (its conditions, their names, how masks
are drawn, what a severity means, its default grid, or a corruption it uses) requires bumping its ``version``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar

from torch import Tensor

from corruptions.base import Condition, Protocol, Rows
from corruptions.missing import RATE, exact_modality_missing, keeps_any, random_modality_missing, remove_modalities
from corruptions.spec import FeatureStats, Range, check_grid, fmt
from harness.data import Batch, DatasetSpec
from harness.registry import PROTOCOLS

FULL = "full"
SEED = Range(0, 2**31 - 1, integer=True)


def pattern_name(available: tuple[str, ...], spec: DatasetSpec) -> str:
    """``full`` for all modalities, otherwise the available ones joined with ``+`` in the spec's order."""
    return FULL if len(available) == len(spec.modalities) else "+".join(available)


def patterns(spec: DatasetSpec) -> list[tuple[str, ...]]:
    """All non-empty subsets of the modalities, larger subsets first, each in the spec's order."""
    mods = spec.modalities
    return [c for k in range(len(mods), 0, -1) for c in combinations(mods, k)]


def scored_by(kept: tuple[str, ...]) -> Rows:
    """The samples a pattern can score: those with at least one of ``kept`` available before removal."""

    def rows(batch: Batch) -> Tensor:
        return keeps_any(batch, kept)

    return rows


@dataclass(frozen=True)
class FixedPattern(Protocol):
    """Every non-empty subset of modalities available for all test samples, the rest removed (2^M - 1).

    ``available``: the patterns to evaluate, each a tuple of modality names (None = every non-empty subset).
    Samples with none of a pattern's modalities are not scored under it (module docstring).
    """

    name = "fixed_pattern"
    version = 2  # v2: samples with none of the pattern's modalities are left out of its metric
    family = "removal"
    label = "missing-modality patterns"
    paper = "MMIN (Zhao et al., ACL 2021), Table 3; ModalImmune (Fu et al., 2026), Table 3"

    available: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        if self.available is None:
            return
        if not isinstance(self.available, tuple) or not self.available or not all(
                isinstance(p, tuple) and all(isinstance(m, str) for m in p) for p in self.available):
            raise ValueError(f"fixed_pattern.available must be None or a non-empty tuple of patterns, each a tuple "
                             f"of modality names such as ('text', 'audio'), got {self.available!r}")

    def chosen(self, spec: DatasetSpec) -> list[tuple[str, ...]]:
        if self.available is None:
            return patterns(spec)
        out = []
        for pattern in self.available:
            unknown = [m for m in pattern if m not in spec.modalities]
            if unknown or not pattern:
                raise ValueError(f"fixed_pattern.available: pattern {list(pattern)} names modalities {unknown} that "
                                 f"dataset {spec.name!r} lacks (or is empty); valid: non-empty subsets of "
                                 f"{list(spec.modalities)}")
            out.append(tuple(m for m in spec.modalities if m in pattern))
        return out

    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        out = []
        for kept in self.chosen(spec):
            removed = tuple(m for m in spec.modalities if m not in kept)
            apply = remove_modalities.bind(spec, modalities=removed)
            out.append(Condition(pattern_name(kept, spec), apply, corruptions=(remove_modalities.name,),
                                 evaluated=scored_by(kept)))
        return out


@dataclass(frozen=True)
class RandomMissing(Protocol):
    """Each modality of each test sample removed w.p. r (>= 1 kept), over rates and mask seeds."""

    name = "random_missing"
    version = 1
    family = "removal"
    label = "random modality missing"
    severity_units = {"random_missing": "drop probability r (per modality)"}
    paper = "GCNet (Lian et al., TPAMI 2023); IMDer (Wang et al., NeurIPS 2023); ModalImmune (Fu et al., 2026), Table 4"

    rates: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    seeds: tuple[int, ...] = (0, 1, 2)
    modalities: tuple[str, ...] | None = None
    corruption: ClassVar[Any] = random_modality_missing

    def __post_init__(self) -> None:
        check_grid(f"{self.name}.rates", self.rates, RATE)
        check_grid(f"{self.name}.seeds", self.seeds, SEED)

    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        out = []
        for r in self.rates:
            apply = self.corruption.bind(spec, rate=r, modalities=self.modalities)
            for s in self.seeds:
                # the seed only enters through the name: the evaluator derives the generator from it
                out.append(Condition(f"r={fmt(r)}/seed={s}", apply, severity=float(r), curve=self.name,
                                     corruptions=(self.corruption.name,)))
        return out


@dataclass(frozen=True)
class MissingRate(RandomMissing):
    """A fraction r of the test split's modality slots removed exactly (>= 1 kept per sample), over rates and
    mask draws: GCNet/CPM-Net's missing rate."""

    name = "missing_rate"
    version = 1
    family = "removal"
    label = "missing rate"
    severity_units = {"missing_rate": "missing rate r (share of modalities)"}
    paper = ("GCNet (Lian et al., TPAMI 2023) and CPM-Net (Zhang et al., TPAMI 2020) missing rate; ModalImmune "
             "(Fu et al., 2026), Table 4")
    corruption = exact_modality_missing


PROTOCOLS.add(FixedPattern.name, FixedPattern())
PROTOCOLS.add(RandomMissing.name, RandomMissing())
PROTOCOLS.add(MissingRate.name, MissingRate())
