"""Optional preprocessing that changes numbers, applied after loading and recorded in the provenance.

Order: temporal mean-pooling (``DataOptions.pool``) first, then per-feature standardisation
(``DataOptions.standardize``), so the statistics describe exactly the features the methods see.

- Pooling: each sequence ``[T, D]`` becomes the mean of its valid steps ``[1, D]`` (MMSA's ``need_normalized``
  does the same for its utterance-level models); lengths become 1.
- Standardisation: ``(x - mean) / std`` per modality and feature, with mean and population std over the
  *training* split's valid steps only (never validation or test, which would leak them into training).
  Features with std < 1e-8 are only centred. Padded steps stay zero.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from harness.data import SPLITS, Batch, DataOptions, Dataset

CONSTANT_STD = 1e-8


def valid_mask(x: Tensor, lengths: Tensor) -> Tensor:
    """bool ``[N, T]``: step t of sample i is inside its length."""
    return torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]


def pool_batch(batch: Batch) -> Batch:
    """Mean over valid steps: ``x[m]`` ``[N, T, D]`` -> ``[N, 1, D]``, lengths all 1."""
    x, lengths = {}, {}
    for m, v in batch.x.items():
        w = valid_mask(v, batch.lengths[m]).to(v.dtype).unsqueeze(-1)
        x[m] = ((v * w).sum(1) / w.sum(1).clamp_min(1)).unsqueeze(1)
        lengths[m] = torch.ones_like(batch.lengths[m])
    return replace(batch, x=x, lengths=lengths)


def train_moments(x: Tensor, lengths: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-feature mean and population std (float64 ``[D]``) over the valid steps of ``x`` ``[N, T, D]``.

    Chunks are merged with Chan et al.'s parallel update, so memory stays bounded and precision float64.
    """
    count, mean, m2 = 0, torch.zeros(x.shape[-1], dtype=torch.float64), torch.zeros(x.shape[-1], dtype=torch.float64)
    for i in range(0, len(x), chunk):
        rows = x[i:i + chunk][valid_mask(x[i:i + chunk], lengths[i:i + chunk])].double()
        k = rows.shape[0]
        if k == 0:
            continue
        mu = rows.mean(0)
        delta, total = mu - mean, count + k
        mean = mean + delta * (k / total)
        m2 = m2 + ((rows - mu) ** 2).sum(0) + delta**2 * (count * k / total)
        count = total
    return mean, (m2 / max(count, 1)).sqrt()


def standardize(data: Dataset) -> tuple[Dataset, dict[str, Any]]:
    """Z-score every modality with training statistics; returns the new dataset and a summary for provenance."""
    summary: dict[str, Any] = {"statistics": "train split, valid steps only; population std"}
    stats = {}
    for m in data.spec.modalities:
        mean, std = train_moments(data.train.x[m].cpu(), data.train.lengths[m].cpu())
        constant = std < CONSTANT_STD
        stats[m] = (mean.float(), torch.where(constant, torch.ones_like(std), std).float())
        summary[m] = {"features": len(mean), "constant_features": int(constant.sum()),
                      "mean_abs_max": float(mean.abs().max()), "std_min": float(std.min()),
                      "std_max": float(std.max())}
    splits = {}
    for s in SPLITS:
        batch = data.split(s)
        x = {}
        for m, v in batch.x.items():
            mean, std = (t.to(v.device) for t in stats[m])
            x[m] = (v - mean) / std * valid_mask(v, batch.lengths[m]).to(v.dtype).unsqueeze(-1)
        splits[s] = replace(batch, x=x)
    return replace(data, **splits), summary


def apply_options(data: Dataset, options: DataOptions) -> Dataset:
    """Pool and/or standardise as ``options`` ask; record both choices in ``provenance["preprocessing"]``."""
    done: dict[str, Any] = {"pool": False, "standardize": False}
    if options.pool:
        data = replace(data, spec=replace(data.spec, seq_lens=(1,) * len(data.spec.modalities)),
                       **{s: pool_batch(data.split(s)) for s in SPLITS})
        done["pool"] = "mean over valid steps (T = 1)"
    if options.standardize:
        data, done["standardize"] = standardize(data)
    return replace(data, provenance={**data.provenance, "preprocessing": done}).validate()
