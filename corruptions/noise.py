"""Noise corruptions on feature values, with strength relative to the training split's feature statistics.

| corruption | parameters (valid range) | identity at | what it does |
|---|---|---|---|
| ``gaussian_noise`` | ``snr_db`` in [-40, inf]; ``power`` feature/modality | ``inf`` | adds N(0, P 10^(-snr/10)) |
| ``impulse_noise`` | ``rate`` in [0, 1) | ``rate=0`` | entries set to the training max/min |
| ``multibench_noise`` | ``level`` in [0, 1) | ``level=0`` | N(0, level²) per step, then steps dropped w.p. level |

Both take ``modalities`` (default: all) and ``stats`` (:class:`~corruptions.spec.FeatureStats` of the
*training* split) and touch only valid steps of present modalities.

``gaussian_noise``: ``P`` is the training-set power (mean of x²) of each feature dimension
(``power='feature'``, the default) or of the modality as a whole (``power='modality'``: the mean over its
dimensions). The noise standard deviation is ``sqrt(P) * 10^(-snr_db / 20)``, so at 0 dB noise and signal
have equal power. Using the training power (not the test batch's) keeps the noise identical for every method
and independent of the corruption being applied. The noise-to-signal amplitude ratio ``10^(-snr_db / 20)``
is what protocols record as severity (0 = clean, larger = noisier). Negative SNRs (noise stronger than the
signal) are valid down to -40 dB, a noise amplitude 100 times the signal's: beyond that the modality is noise
to any model, so lower levels would only repeat the same (chance) point of a curve; ``nan`` is refused.

``impulse_noise`` (ImageNet-C's salt-and-pepper, on features): each entry becomes the training maximum of its
feature dimension with probability ``rate / 2`` and the training minimum with probability ``rate / 2``;
one U[0, 1) draw per entry: ``u < rate/2`` -> max, ``rate/2 <= u < rate`` -> min. ``rate`` is in [0, 1) like
every rate: at 1 every entry is replaced, the modality keeps no signal while ``present`` says it is there,
which is removal in disguise (``remove_modalities`` is the honest way to test that).

``multibench_noise`` (MultiBench's ``add_timeseries_noise(..., rand_drop=False)`` for affect data,
``robustness/timeseries_robust.py``): at every valid time step of a present modality one draw of N(0, level²)
is added to all of the step's features (MultiBench's ``white_noise`` adds one scalar per time step), then each
valid step is zeroed with probability ``level`` (``structured_drop``), both with the noise level as the only
parameter. ``level`` is in absolute feature units, as in MultiBench; mibench standardises features with the
training statistics by default, so there a level is a fraction of each feature's training standard deviation.
(MultiBench's affect dataloader passes ``[array]``, which makes both operations act per *sample* rather than
per step; this follows the functions' documented per-step meaning.) Utterance-level features (T = 1) have one
step, so the drop then zeroes the whole vector.
"""

from __future__ import annotations

import math

import torch

from corruptions.spec import Choice, FeatureStats, Range, corruption, normal, touchable, uniform
from harness.data import Batch

SNR_DB = Range(-40.0, math.inf)
POWER = Choice(("feature", "modality"))
IMPULSE_RATE = Range(0.0, 1.0, hi_open=True)


def noise_amplitude(snr_db: float) -> float:
    """Noise-to-signal amplitude ratio ``10^(-snr_db / 20)``: 0 at ``inf`` dB, 1 at 0 dB."""
    return 0.0 if snr_db == math.inf else 10.0 ** (-snr_db / 20.0)


@corruption("gaussian_noise", family="noise", kind="feature", params={"snr_db": SNR_DB, "power": POWER},
            defaults={"power": "feature"}, example={"snr_db": 5.0}, zero={"snr_db": math.inf}, needs_stats=True)
def gaussian_noise(batch: Batch, generator: torch.Generator, *, snr_db: float, power: str,
                   modalities: tuple[str, ...], stats: FeatureStats) -> Batch:
    """Additive Gaussian noise at ``snr_db`` relative to the training-set feature power."""
    amplitude = noise_amplitude(snr_db)
    new = {}
    for m in modalities:
        x = batch.x[m]
        p = stats.power[m].to(x.device)  # [D]
        if power == "modality":
            p = p.mean().expand_as(p)
        sigma = p.sqrt() * amplitude  # [D]
        new[m] = x + normal(generator, tuple(x.shape), x.device) * sigma * touchable(batch, m)
    return batch.replace_features(new)


@corruption("impulse_noise", family="noise", kind="feature", params={"rate": IMPULSE_RATE},
            example={"rate": 0.2}, zero={"rate": 0.0}, needs_stats=True)
def impulse_noise(batch: Batch, generator: torch.Generator, *, rate: float, modalities: tuple[str, ...],
                  stats: FeatureStats) -> Batch:
    """Salt-and-pepper: a fraction ``rate`` of entries set to the training max (half) or min (half)."""
    new = {}
    for m in modalities:
        x = batch.x[m]
        u = uniform(generator, tuple(x.shape), x.device)
        ok = touchable(batch, m).bool()
        salt, pepper = (u < rate / 2) & ok, (u >= rate / 2) & (u < rate) & ok
        hi, lo = stats.hi[m].to(x.device).expand_as(x), stats.lo[m].to(x.device).expand_as(x)
        new[m] = torch.where(salt, hi, torch.where(pepper, lo, x))
    return batch.replace_features(new)


LEVEL = Range(0.0, 1.0, hi_open=True)


@corruption("multibench_noise", family="noise", kind="feature", params={"level": LEVEL}, example={"level": 0.3},
            zero={"level": 0.0})
def multibench_noise(batch: Batch, generator: torch.Generator, *, level: float,
                     modalities: tuple[str, ...]) -> Batch:
    """MultiBench's time-series noise: N(0, level²) per time step on all features, then steps dropped w.p. level."""
    new = {}
    for m in modalities:
        x = batch.x[m]
        n, t, _ = x.shape
        ok = touchable(batch, m)  # [N, T, 1]
        noise = normal(generator, (n, t, 1), x.device) * level
        keep = (uniform(generator, (n, t, 1), x.device) >= level).to(x.dtype)
        new[m] = torch.where(ok.bool(), (x + noise) * keep, x)
    return batch.replace_features(new)
