"""What ``mibench data info`` shows: a plain dict of numbers describing a loaded dataset (the CLI prints it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.data import SPLITS, Batch, Dataset, DatasetSpec


def label_stats(batch: Batch, spec: DatasetSpec) -> dict[str, Any]:
    """Regression: min, max, mean and share of exact zeros; classification: count per class name."""
    y = batch.y.cpu().numpy()
    if spec.task == "classification":
        counts = np.bincount(y, minlength=len(spec.classes))
        return {"counts": dict(zip(spec.classes, (int(c) for c in counts), strict=True))}
    if not len(y):
        return {"min": None, "max": None, "mean": None, "zero_share": None}
    return {"min": float(y.min()), "max": float(y.max()), "mean": float(y.mean()),
            "zero_share": float((y == 0).mean())}


def modality_stats(batch: Batch, spec: DatasetSpec) -> dict[str, Any]:
    """Per modality: feature size D, padded steps T, length min/mean/max, share of samples present."""
    out = {}
    for j, m in enumerate(spec.modalities):
        ln = batch.lengths[m].cpu().numpy()
        out[m] = {"dim": spec.dims[j], "steps": spec.seq_lens[j], "length_min": int(ln.min()),
                  "length_mean": float(ln.mean()), "length_max": int(ln.max()),
                  "present_share": float(batch.present[:, j].float().mean())}
    return out


def describe(data: Dataset) -> dict[str, Any]:
    """Format, file, per-split sizes, per-modality dims and lengths, label statistics, cleaning counts."""
    prov = dict(data.provenance)
    return {
        "name": data.spec.name,
        "task": data.spec.task,
        "classes": list(data.spec.classes),
        "format": prov.get("format", prov.get("loader", "")),
        "file": prov.get("file", data.spec.source),
        "splits": {s: {"n": len(data.split(s)), "modalities": modality_stats(data.split(s), data.spec),
                       "labels": label_stats(data.split(s), data.spec)} for s in SPLITS},
        "nonfinite_replaced": prov.get("nonfinite_replaced", {"value": None, "total": 0, "counts": {}}),
        "padding_zeroed_steps": prov.get("padding_zeroed_steps", {}),
        "empty_sequences": prov.get("empty_sequences", {}),
        "left_padding_moved": prov.get("left_padding_moved", []),
        "absent_features_zeroed": prov.get("absent_features_zeroed", {}),
        "notes": {k: v for k, v in prov.items() if k in ("aligned", "label_view", "dropped_frustrated",
                                                          "dropped_not_exactly_one_emotion", "text_lengths",
                                                          "valid_dialogues", "preprocessing", "converted_from")},
    }
