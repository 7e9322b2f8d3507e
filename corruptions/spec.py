"""What every corruption function shares: parameter ranges, validation, registration, training statistics.

A corruption is a pure function ``fn(batch, generator, **params) -> Batch``: it returns a new batch and never
modifies its input, draws all randomness from ``generator`` (never a global RNG), and keeps every shape and
dtype. It is registered in ``CORRUPTIONS`` as a :class:`CorruptionSpec`, which validates the parameters before
calling the function, so calling the registered object (the module-level name) is always the validated path.

Conventions shared by every corruption:

- ``modalities``: the modalities the corruption acts on, a tuple of names (``None`` = all, ``()`` = none,
  i.e. the identity). A name the batch lacks is a ``ValueError`` listing the valid names.
- ``stats``: per-feature statistics of the *training* split (:class:`FeatureStats`), for corruptions whose
  strength is relative to the data (noise at an SNR, salt-and-pepper at the feature range).
- Only valid steps (``t < lengths[m]``) of present modalities are touched: padding and removed modalities
  stay zero, and ``present`` is the only truth about missingness.
- Random draws are made on the generator's device (the evaluator uses CPU generators) and then moved to the
  batch's device, so a condition produces the same corrupted data on a CPU and on a GPU.
- Severity parameters are real values where 0 (or ``inf`` dB for an SNR) is the identity; none is an index.
- Rates are in [0, 1): a rate of 1 would destroy every entry it targets, i.e. remove the modality while
  ``present`` still says it is there. A parameter that keeps 1 (a shuffled fraction, a fraction of samples)
  says why in its module's parameter table.
- *missing* corruptions never leave a sample that had a modality without one (the contract tests check it).
- The family ``validation`` (:data:`HELD_OUT_FAMILY`) is held out for tuning: no test protocol may use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from harness.data import Batch, DatasetSpec
from harness.registry import CORRUPTIONS

Apply = Callable[[Batch, torch.Generator], Batch]
Kind = Literal["missing", "feature"]  # missing: changes ``present``; feature: changes feature values only
SPECIAL = ("modalities", "stats")
HELD_OUT_FAMILY = "validation"  # corruptions for tuning on the validation split only (corruptions.validation)
Invalid = tuple[tuple[Mapping[str, Any], str], ...]  # (params over the example, regex of the ValueError message)


@dataclass(frozen=True)
class Range:
    """A real (or integer) interval; ``lo_open``/``hi_open`` exclude an end. ``inf`` ends are allowed."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            return False
        if self.integer and not float(value).is_integer():
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def __str__(self) -> str:
        text = f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        return f"integers in {text}" if self.integer else text

    def outside(self) -> list[float]:
        """Values just outside the range (contract tests use them)."""
        out = [math.nan]
        if math.isfinite(self.lo):
            out.append(self.lo if self.lo_open else self.lo - 1)
        if math.isfinite(self.hi):
            out.append(self.hi if self.hi_open else self.hi + 1)
        if self.integer:
            out.append(0.5 + max(self.lo, min(self.hi, 0)))
        return out


@dataclass(frozen=True)
class Choice:
    """One of a few strings."""

    values: tuple[str, ...]

    def __contains__(self, value: object) -> bool:
        return value in self.values

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def outside(self) -> list[str]:
        return ["<not-a-choice>"]


Param = Range | Choice


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature statistics of the training split, per modality, each a float32 tensor ``[D_m]`` on CPU.

    ``power`` = mean of x², ``lo``/``hi`` = min/max, all over the valid steps of samples where the modality is
    present (padding and removed modalities do not count). A modality never present gets zeros.
    """

    power: Mapping[str, Tensor]
    lo: Mapping[str, Tensor]
    hi: Mapping[str, Tensor]

    @classmethod
    def from_batch(cls, batch: Batch) -> FeatureStats:
        power, lo, hi = {}, {}, {}
        for j, (m, x) in enumerate(batch.x.items()):
            rows = valid_steps(batch, m) & batch.present[:, j].view(-1, 1)  # [N, T]
            v = x[rows].double()  # [K, D]
            empty = v.shape[0] == 0
            zeros = torch.zeros(x.shape[-1], dtype=torch.float64, device=x.device)
            power[m] = (zeros if empty else v.pow(2).mean(0)).float().cpu()
            lo[m] = (zeros if empty else v.min(0).values).float().cpu()
            hi[m] = (zeros if empty else v.max(0).values).float().cpu()
        return cls(power, lo, hi)


def valid_steps(batch: Batch, modality: str) -> Tensor:
    """bool ``[N, T_m]``: True at the steps ``t < lengths[m]``."""
    x = batch.x[modality]
    return torch.arange(x.shape[1], device=x.device).view(1, -1) < batch.lengths[modality].view(-1, 1)


def touchable(batch: Batch, modality: str) -> Tensor:
    """float ``[N, T_m, 1]``: 1 at valid steps of samples where ``modality`` is present, else 0."""
    j = batch.modalities.index(modality)
    mask = valid_steps(batch, modality) & batch.present[:, j].view(-1, 1)
    return mask.unsqueeze(-1).to(batch.x[modality].dtype)


def uniform(generator: torch.Generator, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """U[0, 1) float32 drawn on the generator's device, returned on ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def normal(generator: torch.Generator, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """N(0, 1) float32 drawn on the generator's device, returned on ``device``."""
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def fmt(value: float) -> str:
    """A number as it appears in condition names: ``0.3``, ``10``, ``0.05`` (``%g``, stable)."""
    return f"{value:g}"


@dataclass(frozen=True)
class CorruptionSpec:
    """A registered corruption: the function, its family, its parameter table and its contract-test settings.

    ``params`` maps each numeric/choice parameter to its valid range; ``defaults`` gives optional ones.
    ``example`` is a valid non-trivial setting and ``zero`` the identity setting (None when there is none);
    ``needs_stats`` means ``stats`` (training :class:`FeatureStats`) is required; ``sequence_only`` means the
    targeted modalities need T > 1; ``random`` is False for deterministic corruptions; ``extra_check`` validates
    what a range cannot express (it gets the resolved params and ``{modality: T}`` of every modality), and
    ``invalid`` lists settings it refuses, as ``(params merged over example, regex of the message)`` pairs, so the
    contract tests exercise every rule, not only the ranges.
    """

    name: str
    family: str
    kind: Kind
    fn: Callable[..., Batch]
    params: Mapping[str, Param]
    example: Mapping[str, Any]
    zero: Mapping[str, Any] | None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    needs_stats: bool = False
    sequence_only: bool = False
    random: bool = True
    extra_check: Callable[[Mapping[str, Any], Mapping[str, int]], None] | None = None
    invalid: Invalid = ()
    description: str = ""

    @property
    def held_out(self) -> bool:
        """True for the validation family, which tuning may use and no test protocol may."""
        return self.family == HELD_OUT_FAMILY

    def check(self, params: Mapping[str, Any], modalities: tuple[str, ...], seq_lens: Mapping[str, int],
              dims: Mapping[str, int]) -> dict[str, Any]:
        """Validate ``params`` for data with these modalities, lengths T and dims D; return the full keyword set
        with defaults filled in and ``modalities`` resolved to a tuple. Raises ``ValueError`` naming the
        parameter and its valid range."""
        unknown = sorted(set(params) - set(self.params) - {"modalities"} - ({"stats"} if self.needs_stats else set()))
        if unknown:
            valid = sorted([*self.params, "modalities", *(["stats"] if self.needs_stats else [])])
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; valid: {valid}")
        out = {**self.defaults, **params}
        for key, valid_range in self.params.items():
            if key not in out:
                raise ValueError(f"{self.name}: parameter {key!r} is required ({valid_range})")
            if out[key] not in valid_range:
                raise ValueError(f"{self.name}: {key} = {out[key]!r} is out of range; valid: {valid_range}")
        out["modalities"] = targets = resolve_modalities(self.name, out.get("modalities"), modalities)
        if self.sequence_only:
            for m in targets:
                if seq_lens[m] < 2:
                    raise ValueError(f"{self.name} needs sequences (T > 1); modality {m!r} has T = {seq_lens[m]}")
        if self.needs_stats:
            check_stats(self.name, out.get("stats"), targets, dims)
        if self.extra_check is not None:
            self.extra_check(out, seq_lens)
        return out

    def bind(self, spec: DatasetSpec, **params: Any) -> Apply:
        """Validate against a dataset spec now (before any training) and return ``apply(batch, generator)``."""
        seq = dict(zip(spec.modalities, spec.seq_lens, strict=True))
        kwargs = self.check(params, spec.modalities, seq, dict(zip(spec.modalities, spec.dims, strict=True)))

        def apply(batch: Batch, generator: torch.Generator) -> Batch:
            return self.fn(batch, generator, **kwargs)

        return apply

    def __call__(self, batch: Batch, generator: torch.Generator, **params: Any) -> Batch:
        seq = {m: int(v.shape[1]) for m, v in batch.x.items()}
        dims = {m: int(v.shape[2]) for m, v in batch.x.items()}
        return self.fn(batch, generator, **self.check(params, batch.modalities, seq, dims))


def resolve_modalities(where: str, given: Any, available: tuple[str, ...]) -> tuple[str, ...]:
    """``None`` -> all; otherwise a tuple of known names, kept in the data's order."""
    if given is None:
        return tuple(available)
    names = (given,) if isinstance(given, str) else tuple(given)
    unknown = [m for m in names if m not in available]
    if unknown:
        raise ValueError(f"{where}: modalities {unknown} are not in the data; valid modalities: {list(available)}")
    return tuple(m for m in available if m in names)


def check_stats(where: str, stats: Any, targets: tuple[str, ...], dims: Mapping[str, int]) -> None:
    if not isinstance(stats, FeatureStats):
        raise ValueError(f"{where} needs stats=FeatureStats.from_batch(train split); got {type(stats).__name__}")
    for m in targets:
        if m not in stats.power or stats.power[m].shape != (dims[m],):
            raise ValueError(f"{where}: stats lack modality {m!r} with {dims[m]} features")


def corruption(name: str, *, family: str, kind: Kind, params: Mapping[str, Param], example: Mapping[str, Any],
               zero: Mapping[str, Any] | None, **options: Any) -> Callable[[Callable[..., Batch]], CorruptionSpec]:
    """Decorator: register ``fn`` in ``CORRUPTIONS`` and return its validated :class:`CorruptionSpec`."""

    def wrap(fn: Callable[..., Batch]) -> CorruptionSpec:
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = CorruptionSpec(name, family, kind, fn, params, example, zero, description=doc[0] if doc else "",
                              **options)
        CORRUPTIONS.add(name, spec)
        return spec

    return wrap


def check_grid(where: str, values: tuple[Any, ...], valid: Param, allow_empty: bool = False) -> None:
    """Validate a protocol's parameter grid: a tuple (non-empty unless allowed) of distinct values in ``valid``.

    A bare number is refused with its own message: a grid lists the levels themselves, so ``snr_db=3`` (or a
    negative "count" such as ``-2``) is never read as "three levels".
    """
    what = f"a {'' if allow_empty else 'non-empty '}tuple of values in {valid}"
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        raise ValueError(f"{where} must be {what} (the levels themselves, not how many), got the number {values!r}")
    if not isinstance(values, tuple) or (not values and not allow_empty):
        raise ValueError(f"{where} must be {what}, got {values!r}")
    for v in values:
        if v not in valid:
            raise ValueError(f"{where}: {v!r} is out of range; valid: {valid}")
    if len(set(values)) != len(values):
        raise ValueError(f"{where}: values must be distinct, got {list(values)}")
