"""Recognise a feature file by its contents and read it into :class:`RawData` (numpy, not yet cleaned).

Layouts (see ``docs/datasets.md``):

- ``mmsa``: thuiar/MMSA ``aligned_50.pkl`` / ``unaligned_50.pkl``: ``{split: {"text" (N, L, 768) BERT token
  features, "text_bert" (N, 3, L) optional [input ids, attention mask, segment ids], "audio" (N, L_a, D_a),
  "vision" (N, L_v, D_v), "audio_lengths"/"vision_lengths" (N,) unaligned only, "regression_labels" (N,),
  "id", "raw_text"}}``. mibench uses the float ``text`` features (every method takes float features) and reads
  ``text_bert`` only for its attention mask, which gives the text lengths.
- ``mult``: CMU-MultimodalSDK / MulT ``mosi_data.pkl``, ``mosei_senti_data.pkl``, ``iemocap_data.pkl`` (and
  their ``_noalign`` versions): ``{split: {"text", "audio", "vision" (N, T, D), "labels", "id"}}`` with labels
  (N, 1, 1) sentiment scores or (N, 4, 2) IEMOCAP one-hot [negative, positive] per emotion.
- ``iemocap-dialogue``: the DialogueRNN/MMGCN tuple, read by :mod:`harness.datasets.dialogue`.
- ``mibench-npz``: mibench's own layout, read by :mod:`harness.datasets.npz`.

Split keys are ``train``, ``valid`` (``dev`` is accepted) and ``test``. Readers check structure (keys,
ranks, sample counts, label ranges) and raise one-line ``ValueError`` naming the file and the key; cleaning
values (NaN/inf, padding, lengths) is :mod:`harness.datasets.sanitize`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.data import SPLITS, Task
from harness.datasets import labels

MODALITIES = ("text", "audio", "vision")
SENTIMENT_RANGE = (-3.0, 3.0)


@dataclass
class RawSplit:
    """One split as stored: ``x[m]`` (N, T_m, D_m) any float dtype; ``lengths[m]`` (N,) or None (derive them);
    ``y`` (N,) float scores or int class indices; ``ids`` (N,) str; ``present`` (N, M) bool or None (all True)."""

    x: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray | None]
    y: np.ndarray
    ids: np.ndarray
    present: np.ndarray | None = None


@dataclass
class RawData:
    """A whole file: its layout, three splits and what the labels mean.

    ``aligned``: the modalities share one time axis (word-aligned files), so missing lengths are derived once
    from the first modality (the text) and applied to all. ``notes`` go into the dataset's provenance.
    """

    layout: str
    splits: dict[str, RawSplit]
    task: Task
    classes: tuple[str, ...] = ()
    label_range: tuple[float, float] | None = None
    aligned: bool = False
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modality names in column order: the pickles' (text, audio, vision), or whatever a .npz declares."""
        return tuple(self.splits["train"].x)


def is_real(dtype: Any) -> bool:
    """Booleans, integers and floats: what features and labels may be. Complex values would silently lose
    their imaginary part in the float32 cast, and object or string arrays are no numbers at all."""
    return np.dtype(dtype).kind in "biuf"


def detect(obj: Any, path: Path) -> str:
    """The layout of an unpickled object: ``mmsa``, ``mult`` or ``iemocap-dialogue``; ``ValueError`` otherwise."""
    if isinstance(obj, Mapping) and "train" in obj:
        keys = get_split(obj, "train", path).keys()
        if "regression_labels" in keys:
            return "mmsa"
        if "labels" in keys:
            return "mult"
        raise ValueError(f"{path}: unknown layout: split 'train' has keys {_keys(keys)} but neither "
                         f"'regression_labels' (MMSA) nor 'labels' (CMU-MultimodalSDK/MulT)")
    if isinstance(obj, (tuple, list)) and len(obj) == 9 and all(isinstance(o, Mapping) for o in obj[:7]):
        return "iemocap-dialogue"
    if isinstance(obj, Mapping):
        what = f"a dict with keys {_keys(obj.keys())}"
    else:
        what = f"a {type(obj).__name__}" + (f" of {len(obj)} items" if isinstance(obj, (tuple, list)) else "")
    raise ValueError(f"{path}: unknown layout: {what}; expected an MMSA or CMU-MultimodalSDK/MulT dict of "
                     f"train/valid/test splits, or the 9-item IEMOCAP conversation tuple (see docs/datasets.md)")


def _keys(keys: Any, limit: int = 12) -> str:
    names = sorted(str(k) for k in keys)
    return "[" + ", ".join(names[:limit]) + (", ..." if len(names) > limit else "") + "]"


def get_split(obj: Mapping, split: str, path: Path) -> Mapping:
    """``obj[split]`` (``valid`` falls back to ``dev``); a one-line error when it is missing or not a dict."""
    for key in (split, "dev") if split == "valid" else (split,):
        if key not in obj:
            continue
        if not isinstance(obj[key], Mapping):  # present but unusable: saying "missing" would mislead
            raise ValueError(f"{path}: split {key!r} is a {type(obj[key]).__name__}, expected a dict of arrays "
                             f"(keys such as text, audio, vision and the labels)")
        return obj[key]
    raise ValueError(f"{path}: split {split!r} is missing (the file has {_keys(obj.keys())})")


def get_key(split: Mapping, key: str, where: str) -> Any:
    if key not in split:
        raise ValueError(f"{where}: key {key!r} is missing (keys: {_keys(split.keys())})")
    return split[key]


def features(split: Mapping, key: str, where: str, n: int) -> np.ndarray:
    """``split[key]`` as a 3-D array (N, T, D) with ``n`` samples."""
    x = np.asarray(get_key(split, key, where))
    if x.ndim != 3 or not is_real(x.dtype) or 0 in x.shape[1:]:
        raise ValueError(f"{where}/{key}: expected real-valued features (N, T, D), got {x.dtype} {x.shape}")
    if len(x) != n:
        raise ValueError(f"{where}/{key}: {len(x)} samples but the labels have {n}")
    return x


def lengths_of(split: Mapping, key: str, where: str, n: int) -> np.ndarray | None:
    """Optional per-sample lengths ``split[key]`` (N,), or None when absent."""
    if key not in split:
        return None
    return whole_lengths(np.asarray(split[key]).reshape(-1), f"{where}/{key}", n)


def whole_lengths(ln: np.ndarray, where: str, n: int) -> np.ndarray:
    """``ln`` (n,) as int64 after checking every value is a whole number >= 0.

    A cast alone would turn 2.7 into 2 and silently cut a step off the sequence, so fractions are an error.
    """
    if ln.shape != (n,) or not is_real(ln.dtype) or not np.isfinite(ln).all():
        raise ValueError(f"{where}: expected {n} finite lengths, got {ln.dtype} {ln.shape}")
    bad = np.flatnonzero((ln != np.round(ln)) | (ln < 0))
    if len(bad):
        raise ValueError(f"{where}: lengths must be whole numbers >= 0, got {ln[bad[0]]:g} for sample {bad[0]} "
                         f"({len(bad)} of {n} samples)")
    return ln.astype(np.int64)


def ids_of(split: Mapping, key: str, where: str, n: int, split_name: str) -> np.ndarray:
    """Sample ids as str (N,): 2-D id rows (MulT: video, start, end) are joined with '/'; absent -> split/index."""
    if key not in split:
        return np.array([f"{split_name}/{i}" for i in range(n)])
    raw = np.asarray(split[key])
    if len(raw) != n:
        raise ValueError(f"{where}/{key}: {len(raw)} ids for {n} samples")
    rows = raw.reshape(n, -1)
    return np.array(["/".join(_text(v) for v in row) for row in rows])


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, np.bytes_)) else str(v)


def sentiment_labels(raw: Any, where: str, n: int | None = None) -> np.ndarray:
    """Sentiment scores (N,), (N, 1) or (N, 1, 1) -> float32 (N,), finite and inside [-3, 3]."""
    y = np.asarray(raw)
    if y.ndim == 0 or not is_real(y.dtype) or y.size != len(y):
        raise ValueError(f"{where}: expected sentiment scores (N,), (N, 1) or (N, 1, 1), got {y.dtype} {y.shape}")
    y = y.reshape(-1).astype(np.float32)
    if n is not None and len(y) != n:
        raise ValueError(f"{where}: {len(y)} labels for {n} samples")
    if not np.isfinite(y).all():
        raise ValueError(f"{where}: {int((~np.isfinite(y)).sum())} labels are NaN or infinite")
    lo, hi = SENTIMENT_RANGE
    if len(y) and (y.min() < lo or y.max() > hi):
        raise ValueError(f"{where}: labels out of range: they span [{y.min():g}, {y.max():g}], "
                         f"outside [{lo:g}, {hi:g}]")
    return y


def read_mmsa(obj: Mapping, path: Path) -> RawData:
    """MMSA pickle -> RawData (regression in [-3, 3]). Aligned files (no ``*_lengths``) are word-aligned."""
    splits, aligned = {}, True
    for s in SPLITS:
        split, where = get_split(obj, s, path), f"{path}: {s}"
        y = sentiment_labels(get_key(split, "regression_labels", where), f"{where}/regression_labels")
        n = len(y)
        x = {m: features(split, m, where, n) for m in MODALITIES}
        lengths = {"text": _bert_lengths(split, where, n, x["text"].shape[1])}
        lengths.update({m: lengths_of(split, f"{m}_lengths", where, n) for m in ("audio", "vision")})
        aligned &= lengths["audio"] is None and lengths["vision"] is None
        splits[s] = RawSplit(x, lengths, y, ids_of(split, "id", where, n, s))
    notes = {"text_lengths": "text_bert attention mask" if "text_bert" in obj["train"] else "derived"}
    return RawData("mmsa", splits, "regression", label_range=SENTIMENT_RANGE, aligned=aligned, notes=notes)


def _bert_lengths(split: Mapping, where: str, n: int, steps: int) -> np.ndarray | None:
    """Text lengths from ``text_bert``'s attention mask (row 1 of (N, 3, L)), or None when it is absent."""
    if "text_bert" not in split:
        return None
    tb = np.asarray(split["text_bert"])
    if tb.ndim != 3 or tb.shape[:2] != (n, 3) or tb.shape[2] != steps:
        raise ValueError(f"{where}/text_bert: expected (N, 3, L) = ({n}, 3, {steps}), got {tb.shape}")
    mask = tb[:, 1]
    if not np.isin(mask, (0, 1)).all():
        raise ValueError(f"{where}/text_bert: the attention mask (row 1) must hold only 0 and 1")
    return mask.sum(1).astype(np.int64)


def read_mult(obj: Mapping, path: Path, view: str) -> RawData:
    """CMU-MultimodalSDK/MulT pickle -> RawData: sentiment regression, or IEMOCAP in the label ``view``."""
    first = np.asarray(get_key(get_split(obj, "train", path), "labels", f"{path}: train"))
    emotions = first.ndim >= 2 and first.shape[1] == 4
    splits, dropped = {}, {}
    for s in SPLITS:
        split, where = get_split(obj, s, path), f"{path}: {s}"
        raw_y = get_key(split, "labels", where)
        if emotions:
            y, keep = labels.mult_labels(raw_y, view, f"{where}/labels")
        else:
            y = sentiment_labels(raw_y, f"{where}/labels")
            keep = np.ones(len(y), dtype=bool)
        n = len(keep)
        x = {m: features(split, m, where, n)[keep] for m in MODALITIES}
        splits[s] = RawSplit(x, dict.fromkeys(MODALITIES), y, ids_of(split, "id", where, n, s)[keep])
        dropped[s] = int((~keep).sum())
    aligned = len({splits["train"].x[m].shape[1] for m in MODALITIES}) == 1
    if not emotions:
        return RawData("mult", splits, "regression", label_range=SENTIMENT_RANGE, aligned=aligned)
    notes = {"label_view": view, "emotion_order_in_file": list(labels.MULT_EMOTIONS)}
    if any(dropped.values()):
        notes["dropped_not_exactly_one_emotion"] = dropped
    return RawData("mult", splits, "classification", classes=labels.classes(view), aligned=aligned, notes=notes)
