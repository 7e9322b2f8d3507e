"""The IEMOCAP conversation release (DialogueRNN ``IEMOCAP_features_raw.pkl``, MMGCN ``IEMOCAP_features.pkl``).

The pickle is a 9-tuple keyed by dialogue id::

    videoIDs       {dialogue: [utterance id, ...]}
    videoSpeakers  {dialogue: [speaker per utterance]}            (not used)
    videoLabels    {dialogue: [label 0..5 per utterance]}          hap, sad, neu, ang, exc, fru
    videoText      {dialogue: (n_utt, D_t) or [D_t vectors]}
    videoAudio     {dialogue: (n_utt, D_a)}
    videoVisual    {dialogue: (n_utt, D_v)}
    videoSentence  {dialogue: [transcript per utterance]}          (not used)
    trainVid       [dialogue, ...]   sessions 1-4
    testVid        [dialogue, ...]   session 5

Every utterance is one sample with utterance-level features (T = 1). The release has no validation split:
mibench carves one from the training dialogues, never from test, and keeps whole dialogues together (the
utterances of a dialogue are correlated). Which dialogues: ``round(VALID_FRACTION * n_train)`` of them (at
least one), taken from the sorted training ids permuted by ``numpy.random.default_rng(stable_seed(
"iemocap-dialogue-valid", seed))`` with the data seed (0 unless set), so the split is the same on every
machine. Labels become classes through the view chosen by ``iemocap_classes`` (:mod:`labels`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.datasets import labels
from harness.datasets.formats import MODALITIES, RawData, RawSplit, is_real
from harness.seeding import stable_seed

VALID_FRACTION = 0.1
KEYS = ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "videoAudio", "videoVisual", "videoSentence",
        "trainVid", "testVid")
FEATURE_KEYS = dict(zip(MODALITIES, ("videoText", "videoAudio", "videoVisual"), strict=True))


def carve_valid(train: Sequence[str], seed: int, path: Path) -> tuple[list[str], list[str]]:
    """Split the training dialogue ids into (train, valid) deterministically (see the module docstring)."""
    ids = sorted(train)
    if len(ids) < 2:
        raise ValueError(f"{path}: trainVid: {len(ids)} training dialogue(s); at least 2 are needed to carve a "
                         f"validation split")
    n_valid = max(1, round(VALID_FRACTION * len(ids)))
    order = np.random.default_rng(stable_seed("iemocap-dialogue-valid", seed)).permutation(len(ids))
    valid = {ids[i] for i in order[:n_valid]}
    return [d for d in ids if d not in valid], sorted(valid)


def _dialogue_ids(obj: Sequence[Any], path: Path) -> tuple[list[str], list[str]]:
    train, test = obj[7], obj[8]
    for key, vids in (("trainVid", train), ("testVid", test)):
        if isinstance(vids, (str, bytes, Mapping)) or not hasattr(vids, "__iter__"):
            raise ValueError(f"{path}: {key}: expected a list of dialogue ids, got {type(vids).__name__}")
        if len(list(vids)) == 0:
            raise ValueError(f"{path}: {key}: split is missing (no dialogues)")
    train, test = sorted(str(v) for v in train), sorted(str(v) for v in test)
    if overlap := sorted(set(train) & set(test)):
        raise ValueError(f"{path}: trainVid and testVid share {len(overlap)} dialogue(s), e.g. {overlap[0]!r}")
    return train, test


def _utterances(obj: Sequence[Any], vid: str, path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """One dialogue's features {m: (n_utt, D_m)}, labels (n_utt,) and utterance ids, shape-checked."""
    for i, key in enumerate(KEYS[:7]):
        if vid not in obj[i]:
            raise ValueError(f"{path}: {key}: dialogue {vid!r} is missing")
    y = np.asarray(obj[2][vid])
    if y.ndim != 1 or not is_real(y.dtype):
        raise ValueError(f"{path}: videoLabels[{vid!r}]: expected a list of labels 0..5, got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() > 5 or (y != np.round(y)).any()):
        raise ValueError(f"{path}: videoLabels[{vid!r}]: labels out of range: expected integers 0..5 "
                         f"(hap, sad, neu, ang, exc, fru), found {y.min():g}..{y.max():g}")
    x = {}
    for m, key in FEATURE_KEYS.items():
        v = np.asarray(obj[KEYS.index(key)][vid])
        if v.ndim != 2 or not is_real(v.dtype):
            raise ValueError(f"{path}: {key}[{vid!r}]: expected features (n_utt, D), got {v.dtype} {v.shape}")
        if len(v) != len(y):
            raise ValueError(f"{path}: {key}[{vid!r}] has {len(v)} utterances but videoLabels has {len(y)}")
        x[m] = v
    uids = [str(u) for u in obj[0][vid]]
    if len(uids) != len(y):
        raise ValueError(f"{path}: videoIDs[{vid!r}] has {len(uids)} utterances but videoLabels has {len(y)}")
    return x, y.astype(np.int64), uids


def _split(obj: Sequence[Any], vids: list[str], view: str, path: Path) -> tuple[RawSplit, int]:
    """Stack the utterances of ``vids`` into one split (T = 1); also return how many the view dropped."""
    parts = [_utterances(obj, vid, path) for vid in vids]
    for m, key in FEATURE_KEYS.items():
        dims = {p[0][m].shape[1] for p in parts}
        if len(dims) > 1:
            raise ValueError(f"{path}: {key}: dialogues disagree on the feature size ({sorted(dims)})")
    y6 = np.concatenate([p[1] for p in parts])
    y, keep = labels.dialogue_labels(y6, view)
    x = {m: np.concatenate([p[0][m] for p in parts])[keep][:, None, :] for m in MODALITIES}
    ids = np.array([u for p in parts for u in p[2]])[keep]  # IEMOCAP utterance ids name their dialogue
    return RawSplit(x, {m: np.ones(len(y), dtype=np.int64) for m in MODALITIES}, y, ids), int((~keep).sum())


def read_dialogue(obj: Sequence[Any], path: Path, view: str, seed: int) -> RawData:
    """The 9-tuple -> RawData with train/valid/test utterances in the label ``view``."""
    train, test = _dialogue_ids(obj, path)
    train, valid = carve_valid(train, seed, path)
    splits, dropped = {}, {}
    for name, vids in (("train", train), ("valid", valid), ("test", test)):
        splits[name], dropped[name] = _split(obj, vids, view, path)
    notes: dict[str, Any] = {
        "label_view": view, "file_classes": list(labels.DIALOGUE_CLASSES),
        "valid_dialogues": {"from": "trainVid", "fraction": VALID_FRACTION, "seed": seed, "ids": valid},
    }
    if any(dropped.values()):
        notes["dropped_frustrated"] = dropped
    return RawData("iemocap-dialogue", splits, "classification", classes=labels.classes(view), notes=notes)
