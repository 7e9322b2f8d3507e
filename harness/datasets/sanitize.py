"""Make raw arrays fit the Batch contract, counting every value that changes.

For each split and modality, in this order:

1. NaN, +inf and -inf become ``nan_value`` (MMSA audio holds -inf; MMSA and MulT replace it with 0).
2. Lengths: given ones are whole numbers in [0, T] (the readers reject fractions and negatives). Missing
   ones are derived from the rows that are not all zero: right padding (the usual) gives ``last non-zero
   step + 1``; a file whose sequences all end at the last step while some start with zero rows is
   left-padded, and its sequences are moved to the front. In a word-aligned file the first modality's
   lengths (the text's, from the BERT attention mask when there is one) apply to all modalities, because
   they share one time axis.
3. Steps beyond a sample's length are set to zero; rows that were not zero are counted as "padding zeroed".
4. A sequence of length 0 (nothing but zeros) keeps one zero step (Batch needs length >= 1) and is counted
   as empty. Its ``present`` flag stays True: the file says the modality was recorded.
5. Where the file's ``present`` mask (``.npz`` only) marks a modality absent, its features are zeroed and
   the non-zero ones counted, as :meth:`Batch.drop` does, so a method that ignores ``present`` cannot read
   what the file says was not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.datasets.formats import RawSplit


@dataclass
class Report:
    """What cleaning changed, keyed by ``split/modality``; goes into the dataset's provenance."""

    nan_value: float
    nonfinite: dict[str, dict[str, int]] = field(default_factory=dict)
    padding_zeroed: dict[str, int] = field(default_factory=dict)
    empty: dict[str, int] = field(default_factory=dict)
    left_padded: list[str] = field(default_factory=list)
    absent_zeroed: dict[str, int] = field(default_factory=dict)

    def as_provenance(self) -> dict[str, Any]:
        return {
            "nonfinite_replaced": {"value": self.nan_value, "total": sum(sum(c.values()) for c in
                                                                         self.nonfinite.values()),
                                   "counts": self.nonfinite},
            "padding_zeroed_steps": self.padding_zeroed,
            "empty_sequences": self.empty,
            "left_padding_moved": self.left_padded,
            "absent_features_zeroed": self.absent_zeroed,
        }


def replace_nonfinite(x: np.ndarray, value: float) -> tuple[np.ndarray, dict[str, int]]:
    """float32 copy-if-needed of ``x`` with NaN/+-inf set to ``value``; counts by kind (empty if none)."""
    x = np.asarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if not bad.any():
        return x, {}
    if not x.flags.writeable:
        x = x.copy()
    values = x[bad]
    counts = {"nan": int(np.isnan(values).sum()), "+inf": int((values == np.inf).sum()),
              "-inf": int((values == -np.inf).sum())}
    x[bad] = value
    return x, counts


def derive_lengths(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths (N,) and left offsets (N,) of ``x`` (N, T, D) from its non-zero rows (see the module docstring)."""
    n, t = x.shape[:2]
    nonzero = (x != 0).any(axis=2)
    has = nonzero.any(axis=1)
    first = nonzero.argmax(axis=1)
    last = t - 1 - nonzero[:, ::-1].argmax(axis=1)
    left = has.any() and bool((last[has] == t - 1).all()) and bool((first[has] > 0).any())
    if left:
        return np.where(has, t - first, 0).astype(np.int64), np.where(has, first, 0).astype(np.int64)
    return np.where(has, last + 1, 0).astype(np.int64), np.zeros(n, dtype=np.int64)


def shift_left(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each sample's steps ``offsets[i]:`` to the front; what moves in from the end is zero."""
    t = x.shape[1]
    idx = np.arange(t)[None, :] + offsets[:, None]
    out = np.take_along_axis(x, np.minimum(idx, t - 1)[:, :, None], axis=1)
    out[idx >= t] = 0.0
    return out


def zero_beyond(x: np.ndarray, lengths: np.ndarray, chunk: int = 2048) -> int:
    """Zero (in place) every step at or after ``lengths[i]``; return how many of those rows were not zero.

    Works in chunks of samples so that a large file (MOSEI) does not need a copy of all its padding at once.
    """
    junk = 0
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk]  # a view: writes go to x
        pad = np.arange(x.shape[1])[None, :] >= lengths[i:i + chunk, None]
        if pad.any() and (n := int((part[pad] != 0).any(axis=-1).sum())):
            junk += n
            part[pad] = 0.0
    return junk


def check_lengths(lengths: np.ndarray, steps: int, where: str) -> None:
    """Given lengths (already whole and >= 0, see ``formats.whole_lengths``) must fit the ``steps`` stored."""
    if len(lengths) and lengths.max() > steps:
        raise ValueError(f"{where}: lengths longer than the sequence: they span "
                         f"[{lengths.min()}, {lengths.max()}] but the features hold {steps} steps")


def zero_absent(x: np.ndarray, present: np.ndarray | None) -> int:
    """Zero (in place) the samples whose ``present`` flag (N,) is False; return how many rows were not zero."""
    if present is None or present.all():
        return 0
    rows = int((x[~present] != 0).any(axis=-1).sum())
    x[~present] = 0.0
    return rows


def clean_split(raw: RawSplit, split: str, aligned: bool, report: Report, where: str
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cleaned float32 features (N, T_m, D_m) and int64 lengths (N,) in [1, T_m] for one split."""
    xs, lens = {}, {}
    shared: tuple[np.ndarray, np.ndarray] | None = None
    first = next(iter(raw.x))  # aligned files: the text, whose lengths every modality shares
    for j, m in enumerate(raw.x):
        key = f"{split}/{m}"
        x, counts = replace_nonfinite(raw.x[m], report.nan_value)
        if counts:
            report.nonfinite[key] = counts
        given = raw.lengths.get(m)
        if given is not None:
            check_lengths(given, x.shape[1], f"{where}/{m}_lengths")
            lengths, offsets = given.astype(np.int64), np.zeros(len(given), dtype=np.int64)
        elif aligned and shared is not None and x.shape[1] == xs[first].shape[1]:
            lengths, offsets = shared
        else:
            lengths, offsets = derive_lengths(x)
        if m == first:
            shared = (lengths, offsets)
        if offsets.any():
            x = shift_left(x, offsets)
            report.left_padded.append(key)
        elif not x.flags.writeable:
            x = x.copy()
        if junk := zero_beyond(x, lengths):
            report.padding_zeroed[key] = junk
        if empty := int((lengths == 0).sum()):
            report.empty[key] = empty
        if absent := zero_absent(x, None if raw.present is None else raw.present[:, j]):
            report.absent_zeroed[key] = absent
        xs[m], lens[m] = x, np.maximum(lengths, 1)
    return xs, lens
