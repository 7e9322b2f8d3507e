"""Degradation protocols: frames masked inside sequences, noise on features, temporal disorder.

| protocol | conditions (names) | severity (0 = clean) | reference |
|---|---|---|---|
| frame_missing v1 | ``iid/r=0.3``, ``block/r=0.3`` | r | TFR-Net, LNLN (RMFM_same); CIDer STMFM |
| noise v1 | ``gaussian/snr=10dB/modality=audio``, ``impulse/p=0.05/modality=all`` | amplitude ratio; p | MultiBench |
| noise_multibench v1 | ``level=0.3/modality=audio``, ``level=0.3/modality=all`` | level | MultiBench |
| temporal v1 | ``shuffle/f=0.5/modality=all``, ``shift/k=2/modality=audio`` | f; k | MultiBench-style |

``frame_missing`` (TFR-Net, Yuan et al., ACM MM 2021; LNLN, Zhang et al., NeurIPS 2024; anchors P3/P3b): every
targeted modality has each valid time step masked with the same rate r (``iid``, RMFM_same), or one block of
``round(r * length)`` steps (``block``, CIDer's STMFM). r in {0, 0.1, ..., 0.9}, LNLN's grid; its headline is
the mean over these rates. Masked steps are zeroed, text included (see ``corruptions.missing``). Needs
sequences: on a dataset with T = 1 it raises (named explicitly) or is skipped (selected via ``all``).

``noise`` (MultiBench, Liang et al., NeurIPS 2021 D&B, noise levels on features; ModalImmune Table 6 impulse
noise): additive Gaussian noise at SNRs in dB relative to the training-set power of each feature
(``corruptions.noise``), and salt-and-pepper impulse noise, on all modalities at once (``modality=all``) and
on one modality at a time. Severity of a Gaussian condition is the noise-to-signal amplitude ratio
``10^(-snr/20)`` (0 = clean, 1 = 0 dB), so curves run the same way as every other protocol's.

``noise_multibench`` (MultiBench, Liang et al., NeurIPS 2021 D&B, ``datasets/affect/get_data.py``,
``robust_test=True``): MultiBench's own recipe (``corruptions.noise.multibench_noise``): at level ``i/10`` for
i = 0..9, Gaussian noise of standard deviation ``level`` per time step and time steps dropped with probability
``level``, on each modality alone (MultiBench's ``robust_audio``/``robust_vision``) and on all at once. Text:
MultiBench perturbs the raw words (swaps, typos, omissions with probability ``level``) and re-embeds them
with GloVe; precomputed features have no words, so here the text features get the same time-series noise as
audio and vision (MultiBench's multimodal ``robust_timeseries`` did the same to text features). Its curves are
comparable with MultiBench's audio/vision robustness curves and its relative robustness (area under the
curve with Δx = 0.1, ``mibench report``), not with its text-noise numbers.

``temporal`` (misalignment/order robustness; MulT-style unaligned evaluation): ``shuffle`` permutes a fraction
f of each sequence's valid steps (all modalities, then each alone); ``shift`` delays one modality by k steps
against the others (zero fill). Needs sequences.

Versioning rule (``corruptions.base``): changing a protocol's semantics (its conditions, their names, how masks
are drawn, what a severity means, its default grid, or a corruption it uses) requires bumping its ``version``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from corruptions.base import Condition, Protocol, sequence_problem
from corruptions.missing import RATE, frame_block_mask, frame_mask
from corruptions.noise import (
    IMPULSE_RATE,
    LEVEL,
    POWER,
    SNR_DB,
    gaussian_noise,
    impulse_noise,
    multibench_noise,
    noise_amplitude,
)
from corruptions.spec import FeatureStats, Range, check_grid, fmt
from corruptions.temporal import FRACTION, temporal_shift, temporal_shuffle
from harness.data import DatasetSpec
from harness.registry import PROTOCOLS

ALL = "all"
LNLN_RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
VARIANTS = {"iid": frame_mask, "block": frame_block_mask}


def need_stats(protocol: str, stats: FeatureStats | None) -> FeatureStats:
    if stats is None:
        raise ValueError(f"{protocol} needs the training split's feature statistics: pass "
                         "stats=FeatureStats.from_batch(train) to conditions() (the evaluator does)")
    return stats


def targets(protocol: str, spec: DatasetSpec, given: tuple[str, ...] | None, with_all: bool) -> list[str]:
    """``all`` (if wanted) then each modality, or the given names checked against the dataset."""
    if given is None:
        return ([ALL] if with_all else []) + list(spec.modalities)
    valid = ([ALL] if with_all else []) + list(spec.modalities)
    bad = [t for t in given if t not in valid]
    if bad or not given:
        raise ValueError(f"{protocol}.targets: {bad or '()'} not valid for dataset {spec.name!r}; valid: {valid}")
    return list(given)


def on(target: str) -> tuple[str, ...] | None:
    return None if target == ALL else (target,)


@dataclass(frozen=True)
class FrameMissing(Protocol):
    """Time steps masked (zeroed) with rate r: independently per step (iid) and as one contiguous block."""

    name = "frame_missing"
    version = 1
    family = "masking"
    label = "frame masking"
    severity_units = {"frame_missing": "frame masking rate r"}
    paper = "TFR-Net (Yuan et al., ACM MM 2021); LNLN (Zhang et al., NeurIPS 2024); CIDer (2025) STMFM"

    rates: tuple[float, ...] = LNLN_RATES
    variants: tuple[str, ...] = ("iid", "block")
    modalities: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_grid("frame_missing.rates", self.rates, RATE)
        for v in self.variants:
            if v not in VARIANTS:
                raise ValueError(f"frame_missing.variants: {v!r} is unknown; valid: {list(VARIANTS)}")

    def unsupported(self, spec: DatasetSpec) -> str | None:
        return sequence_problem(self.name, spec, self.modalities)

    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        self.require_supported(spec)
        out = []
        for variant in self.variants:
            fn = VARIANTS[variant]
            for r in self.rates:
                out.append(Condition(f"{variant}/r={fmt(r)}", fn.bind(spec, rate=r, modalities=self.modalities),
                                     severity=float(r), curve=f"{self.name}/{variant}", corruptions=(fn.name,)))
        return out


@dataclass(frozen=True)
class Noise(Protocol):
    """Gaussian noise at SNRs (dB, vs training power) and impulse noise, on all modalities and on each alone."""

    name = "noise"
    version = 1
    family = "noise"
    label = "feature noise"
    severity_units = {"gaussian": "noise-to-signal amplitude ratio", "impulse": "impulse rate p (share of values)"}
    paper = "MultiBench (Liang et al., NeurIPS 2021 D&B); ModalImmune (Fu et al., 2026), Table 6 (impulse noise)"

    snr_db: tuple[float, ...] = (20.0, 10.0, 5.0, 0.0)
    impulse_rates: tuple[float, ...] = (0.05, 0.1, 0.2)
    targets: tuple[str, ...] | None = None
    power: str = "feature"

    def __post_init__(self) -> None:
        check_grid("noise.snr_db", self.snr_db, SNR_DB, allow_empty=True)
        check_grid("noise.impulse_rates", self.impulse_rates, IMPULSE_RATE, allow_empty=True)
        if not self.snr_db and not self.impulse_rates:
            raise ValueError("noise: snr_db and impulse_rates are both empty; give at least one level")
        if self.power not in POWER:
            raise ValueError(f"noise.power = {self.power!r} is invalid; valid: {POWER}")

    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        st = need_stats(self.name, stats)
        out = []
        for target in targets(self.name, spec, self.targets, with_all=True):
            for snr in self.snr_db:
                apply = gaussian_noise.bind(spec, snr_db=snr, power=self.power, modalities=on(target), stats=st)
                out.append(Condition(f"gaussian/snr={fmt(snr)}dB/modality={target}", apply,
                                     severity=noise_amplitude(snr), curve=f"noise/gaussian/{target}",
                                     corruptions=(gaussian_noise.name,)))
            for p in self.impulse_rates:
                apply = impulse_noise.bind(spec, rate=p, modalities=on(target), stats=st)
                out.append(Condition(f"impulse/p={fmt(p)}/modality={target}", apply, severity=float(p),
                                     curve=f"noise/impulse/{target}", corruptions=(impulse_noise.name,)))
        return out


@dataclass(frozen=True)
class NoiseMultiBench(Protocol):
    """MultiBench's noise recipe: Gaussian noise (std = level) per time step and time steps dropped with
    probability level, levels 0–0.9, on each modality alone and on all at once."""

    name = "noise_multibench"
    version = 1
    family = "noise"
    label = "MultiBench noise"
    severity_units = {"noise_multibench": "noise level (std, drop rate)"}
    paper = "MultiBench (Liang et al., NeurIPS 2021 D&B), robust_audio/robust_vision/robust_timeseries"

    levels: tuple[float, ...] = LNLN_RATES  # i/10, i = 0..9
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_grid("noise_multibench.levels", self.levels, LEVEL)

    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        out = []
        for target in targets(self.name, spec, self.targets, with_all=True):
            for level in self.levels:
                apply = multibench_noise.bind(spec, level=level, modalities=on(target))
                out.append(Condition(f"level={fmt(level)}/modality={target}", apply, severity=float(level),
                                     curve=f"{self.name}/{target}", corruptions=(multibench_noise.name,)))
        return out


@dataclass(frozen=True)
class Temporal(Protocol):
    """Temporal shuffle (all modalities, then each) and misalignment (one modality shifted by k steps)."""

    name = "temporal"
    version = 1
    family = "temporal"
    label = "temporal corruption"
    severity_units = {"shuffle": "share of time steps shuffled", "shift": "shift k (time steps)"}
    paper = "misalignment as in MulT's unaligned setting (Tsai et al., ACL 2019); shuffle as an order-robustness probe"

    shuffle_fractions: tuple[float, ...] = (0.25, 0.5, 1.0)
    shift_steps: tuple[int, ...] = (1, 2, 4)
    modalities: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_grid("temporal.shuffle_fractions", self.shuffle_fractions, FRACTION, allow_empty=True)
        check_grid("temporal.shift_steps", self.shift_steps, Range(1, math.inf, integer=True), allow_empty=True)
        if not self.shuffle_fractions and not self.shift_steps:
            raise ValueError("temporal: shuffle_fractions and shift_steps are both empty; give at least one")

    def unsupported(self, spec: DatasetSpec) -> str | None:
        return sequence_problem(self.name, spec, self.modalities)

    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        self.require_supported(spec)
        mods = targets(self.name, spec, self.modalities, with_all=False)
        out = []
        for target in ([ALL] if self.modalities is None else []) + mods:
            chosen = tuple(mods) if target == ALL else (target,)
            for f in self.shuffle_fractions:
                apply = temporal_shuffle.bind(spec, fraction=f, modalities=chosen)
                out.append(Condition(f"shuffle/f={fmt(f)}/modality={target}", apply, severity=float(f),
                                     curve=f"temporal/shuffle/{target}", corruptions=(temporal_shuffle.name,)))
        for target in mods:
            for k in self.shift_steps:
                apply = temporal_shift.bind(spec, steps=k, modalities=(target,))
                out.append(Condition(f"shift/k={k}/modality={target}", apply, severity=float(k),
                                     curve=f"temporal/shift/{target}", corruptions=(temporal_shift.name,)))
        return out


PROTOCOLS.add(FrameMissing.name, FrameMissing())
PROTOCOLS.add(Noise.name, Noise())
PROTOCOLS.add(NoiseMultiBench.name, NoiseMultiBench())
PROTOCOLS.add(Temporal.name, Temporal())
