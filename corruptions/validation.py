"""The held-out validation family: corruptions that no test protocol uses, for methods and their tuning.

A method that tunes its robustness (a dropout rate, a noise level for augmentation, an early-stopping
criterion) may measure itself on the *validation split* under these corruptions; because no test protocol
uses any of them (a test asserts it), tuning never sees a test corruption. They resemble the test families
in spirit (lost entries, distorted values, calibration drift) without being any of them.

| corruption | parameters (valid range) | identity at | what it does |
|---|---|---|---|
| ``feature_dropout`` | ``rate`` in [0, 1) | ``rate=0`` | zeroes each feature entry w.p. ``rate`` (no rescale) |
| ``quantize`` | ``bits`` integer in [1, 16] | none | 2^bits levels on each feature's training [min, max] |
| ``gain_drift`` | ``sigma`` in [0, 2] | ``sigma=0`` | scales a sample's modality by exp(sigma z), z ~ N(0, 1) |

All take ``modalities`` (default: all) and touch only valid steps of present modalities; ``quantize`` needs
``stats``. The ``validation`` protocol (family ``validation``, registered hidden: never part of ``all``)
expands them into named conditions. It is ``held_out``: the evaluator refuses it on the test split
(``mibench run --protocols validation`` fails before training, with the reason), because a test report
must never use a tuning corruption. Use it on the validation split, e.g.::

    pairs = expand([PROTOCOLS.get("validation")], spec, FeatureStats.from_batch(data.train), held_out=True)
    results = evaluate(model, data.valid, pairs)  # harness.evaluate; refuses any test protocol in ``pairs``

Versioning rule (``corruptions.base``): changing a protocol's semantics (its conditions, their names, how masks
are drawn, what a severity means, its default grid, or a corruption it uses) requires bumping its ``version``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from corruptions.base import Condition, Protocol
from corruptions.spec import HELD_OUT_FAMILY as FAMILY  # what makes these corruptions held out (spec.held_out)
from corruptions.spec import FeatureStats, Range, check_grid, corruption, fmt, normal, touchable, uniform
from harness.data import Batch, DatasetSpec
from harness.registry import PROTOCOLS

DROP_RATE = Range(0.0, 1.0, hi_open=True)
BITS = Range(1, 16, integer=True)
SIGMA = Range(0.0, 2.0)


@corruption("feature_dropout", family=FAMILY, kind="feature", params={"rate": DROP_RATE}, example={"rate": 0.3},
            zero={"rate": 0.0})
def feature_dropout(batch: Batch, generator: torch.Generator, *, rate: float, modalities: tuple[str, ...]) -> Batch:
    """Zero each feature entry independently with probability ``rate`` (no rescaling)."""
    new = {}
    for m in modalities:
        x = batch.x[m]
        drop = (uniform(generator, tuple(x.shape), x.device) < rate) & touchable(batch, m).bool()
        new[m] = x * (~drop).to(x.dtype)
    return batch.replace_features(new)


@corruption("quantize", family=FAMILY, kind="feature", params={"bits": BITS}, example={"bits": 2}, zero=None,
            needs_stats=True, random=False)
def quantize(batch: Batch, generator: torch.Generator, *, bits: int, modalities: tuple[str, ...],
             stats: FeatureStats) -> Batch:
    """Uniform quantisation to ``2^bits`` levels over each feature's training range (values clamped to it)."""
    levels = 2 ** int(bits) - 1
    new = {}
    for m in modalities:
        x = batch.x[m]
        lo, hi = stats.lo[m].to(x.device), stats.hi[m].to(x.device)
        span = (hi - lo).clamp(min=1e-12)
        q = lo + torch.round((x.clamp(lo, hi) - lo) / span * levels) / levels * span
        new[m] = torch.where(touchable(batch, m).bool(), q, x)
    return batch.replace_features(new)


@corruption("gain_drift", family=FAMILY, kind="feature", params={"sigma": SIGMA}, example={"sigma": 0.5},
            zero={"sigma": 0.0})
def gain_drift(batch: Batch, generator: torch.Generator, *, sigma: float, modalities: tuple[str, ...]) -> Batch:
    """Scale each sample's modality by a log-normal gain ``exp(sigma * z)`` (a sensor calibration drift)."""
    new = {}
    for m in modalities:
        x = batch.x[m]
        gain = torch.exp(sigma * normal(generator, (x.shape[0], 1, 1), x.device))
        new[m] = x * gain
    return batch.replace_features(new)


@dataclass(frozen=True)
class Validation(Protocol):
    """Held-out corruptions for tuning on the validation split; never used by a test protocol."""

    name = "validation"
    version = 1
    family = FAMILY
    held_out = True
    paper = "mibench's held-out family (no test protocol uses these corruptions)"

    dropout_rates: tuple[float, ...] = (0.1, 0.3)
    quantize_bits: tuple[int, ...] = (4, 2)
    gain_sigmas: tuple[float, ...] = (0.2, 0.5)

    def __post_init__(self) -> None:
        check_grid("validation.dropout_rates", self.dropout_rates, DROP_RATE, allow_empty=True)
        check_grid("validation.quantize_bits", self.quantize_bits, BITS, allow_empty=True)
        check_grid("validation.gain_sigmas", self.gain_sigmas, SIGMA, allow_empty=True)

    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        out = [Condition(f"feature_dropout/p={fmt(p)}", feature_dropout.bind(spec, rate=p), severity=float(p),
                         curve=f"{self.name}/feature_dropout", corruptions=(feature_dropout.name,))
               for p in self.dropout_rates]
        if self.quantize_bits:
            if stats is None:
                raise ValueError("validation: quantize needs stats=FeatureStats.from_batch(train)")
            out += [Condition(f"quantize/bits={b}", quantize.bind(spec, bits=b, stats=stats),
                              corruptions=(quantize.name,)) for b in self.quantize_bits]
        out += [Condition(f"gain_drift/sigma={fmt(s)}", gain_drift.bind(spec, sigma=s), severity=float(s),
                          curve=f"{self.name}/gain_drift", corruptions=(gain_drift.name,)) for s in self.gain_sigmas]
        return out


PROTOCOLS.add(Validation.name, Validation(), hidden=True)
