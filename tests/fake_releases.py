"""Tiny stand-ins for the community feature files, built inside the tests (no data is committed).

Each builder returns the object to pickle and the ground truth the loader must recover (lengths, labels,
how many NaN/inf values were planted, how many non-zero padded steps were planted). :func:`minimal_npz`
writes a ``.npz`` by hand, as a user would, with only the keys docs/datasets.md requires.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

SIZES = {"train": 12, "valid": 6, "test": 8}
DIMS = {"text": 6, "audio": 5, "vision": 4}


def dump(obj: Any, path: Path, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _seq(rng: np.random.Generator, n: int, steps: int, dim: int, lengths: np.ndarray, left: bool = False
         ) -> np.ndarray:
    """(n, steps, dim) float32, non-zero inside each length, zero padding on the right (or left)."""
    x = rng.uniform(0.5, 1.5, size=(n, steps, dim)).astype(np.float32) * rng.choice([-1, 1], size=(n, steps, dim))
    pad = np.arange(steps)[None, :] >= lengths[:, None]
    x[pad[:, ::-1] if left else pad] = 0.0
    return x


def _sentiment(rng: np.random.Generator, n: int) -> np.ndarray:
    y = np.round(rng.uniform(-3, 3, size=n) * 3) / 3
    y[:2] = 0.0  # exact zeros occur in MOSI
    return y.astype(np.float32)


def mmsa(aligned: bool = False, text_bert: bool = True, seed: int = 0) -> tuple[dict, dict]:
    """An MMSA-style pickle: unaligned (own lengths, -inf/NaN in audio, junk after one audio length) or aligned."""
    rng = np.random.default_rng(seed)
    obj, truth = {}, {"lengths": {}, "labels": {}, "nonfinite": 0, "junk": 0}
    for s, n in SIZES.items():
        lt = rng.integers(2, 9, size=n)
        la, lv = (lt, lt) if aligned else (rng.integers(1, 11, size=n), rng.integers(1, 10, size=n))
        split = {"text": _seq(rng, n, 8, DIMS["text"], lt), "raw_text": [f"words {i}" for i in range(n)],
                 "audio": _seq(rng, n, 8 if aligned else 10, DIMS["audio"], la),
                 "vision": _seq(rng, n, 8 if aligned else 9, DIMS["vision"], lv),
                 "regression_labels": _sentiment(rng, n), "id": [f"video{s}$_${i}" for i in range(n)]}
        split["audio"][0, 0, :2] = [-np.inf, np.nan]  # the MMSA quirk
        truth["nonfinite"] += 2
        if la[1] < split["audio"].shape[1]:
            split["audio"][1, la[1]:, 0] = 7.0  # junk in the padding
            truth["junk"] += split["audio"].shape[1] - la[1]
        if text_bert:
            mask = (np.arange(8)[None, :] < lt[:, None]).astype(np.float32)
            split["text_bert"] = np.stack([mask * 101, mask, np.zeros_like(mask)], axis=1)
        if not aligned:
            split["audio_lengths"], split["vision_lengths"] = list(la), list(lv)
        obj[s] = split
        truth["lengths"][s] = {"text": lt, "audio": la, "vision": lv}
        truth["labels"][s] = split["regression_labels"]
    return obj, truth


def mult(emotions: bool = False, seed: int = 1) -> tuple[dict, dict]:
    """A CMU-MultimodalSDK/MulT-style pickle, word-aligned (T = 7) and left-padded, -inf in audio."""
    rng = np.random.default_rng(seed)
    obj, truth = {}, {"lengths": {}, "labels": {}, "right_padded": {}, "nonfinite": 0}
    for s, n in SIZES.items():
        lt = rng.integers(2, 7, size=n)  # < 7: every sample has padding, all sequences end at the last step
        x = {m: _seq(rng, n, 7, d, lt, left=True) for m, d in DIMS.items()}
        x["audio"][0, -1, 0] = -np.inf
        truth["nonfinite"] += 1
        if emotions:
            labels = np.zeros((n, 4, 2), dtype=np.float32)
            positive = np.zeros((n, 4), dtype=bool)
            positive[np.arange(n), np.arange(n) % 4] = True  # exactly one emotion, in file order
            positive[0] = [False, True, True, False]  # two emotions: dropped from the 4-class view
            positive[1] = False  # none: dropped too
            labels[..., 1], labels[..., 0] = positive, ~positive
            truth["labels"][s] = positive
        else:
            labels = _sentiment(rng, n).reshape(n, 1, 1)
            truth["labels"][s] = labels.reshape(-1)
        ids = np.array([[f"v{s}".encode(), str(i).encode(), b"0"] for i in range(n)])
        obj[s] = {**x, "labels": labels, "id": ids}
        truth["lengths"][s] = lt
        truth["right_padded"][s] = {m: _shift_right(v, lt) for m, v in x.items()}
    return obj, truth


def _shift_right(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for i, ln in enumerate(lengths):
        out[i, :ln] = x[i, x.shape[1] - ln:]
    out[~np.isfinite(out)] = 0.0
    return out


def dialogue(n_train: int = 10, n_test: int = 3, seed: int = 2) -> tuple[tuple, dict]:
    """The DialogueRNN/MMGCN 9-tuple: labels cycle through 0..5 so every class occurs."""
    rng = np.random.default_rng(seed)
    vids = [f"Ses0{1 + k % 4}F_impro{k:02d}" for k in range(n_train)] + [f"Ses05M_script{k:02d}" for k in range(n_test)]
    ids, speakers, labels, text, audio, visual, sentence = ({} for _ in range(7))
    for k, vid in enumerate(vids):
        n = 4 + k % 3
        ids[vid] = [f"{vid}_{'F' if i % 2 else 'M'}{i:03d}" for i in range(n)]
        speakers[vid] = ["M" if i % 2 == 0 else "F" for i in range(n)]
        labels[vid] = [(k + i) % 6 for i in range(n)]
        text[vid] = [rng.standard_normal(DIMS["text"]).astype(np.float32) for _ in range(n)]
        audio[vid] = rng.standard_normal((n, DIMS["audio"])).astype(np.float32)
        visual[vid] = rng.standard_normal((n, DIMS["vision"])).astype(np.float32)
        sentence[vid] = [f"utterance {i}" for i in range(n)]
    obj = (ids, speakers, labels, text, audio, visual, sentence, vids[:n_train], set(vids[n_train:]))
    return obj, {"train_vids": vids[:n_train], "test_vids": vids[n_train:], "labels": labels}


# layout -> (dataset it is read as, builder of the object to pickle)
PICKLED: dict[str, tuple[str, Callable[[], tuple[Any, dict]]]] = {
    "mmsa": ("mosi", mmsa), "mmsa-aligned": ("mosi", lambda: mmsa(aligned=True)), "mult": ("mosi", mult),
    "mult-iemocap": ("iemocap", lambda: mult(emotions=True)), "dialogue": ("iemocap", dialogue)}
LAYOUTS = (*PICKLED, "npz")


def release_file(layout: str, folder: Path) -> tuple[str, Path]:
    """(dataset name, a tiny file in ``layout`` under ``folder``); ``npz`` is the MMSA file converted by mibench."""
    if layout == "npz":
        from harness.data import DataOptions
        from harness.datasets.real import convert

        convert(dump(mmsa()[0], folder / "source.pkl"), folder / "mosi.npz", "mosi", DataOptions())
        return "mosi", folder / "mosi.npz"
    name, build = PICKLED[layout]
    return name, dump(build()[0], folder / "features.pkl")


def minimal_npz(path: Path, modalities: tuple[str, ...] = ("text", "audio", "vision"), task: str = "regression",
                changes: Mapping[str, Any] | None = None, steps: int = 4, seed: int = 3) -> dict[str, np.ndarray]:
    """Write a mibench .npz with only the required keys (no lengths, ids, present; no classes for regression).

    Features are non-zero at every step, except train sample 0 of the first modality, whose last step is zero
    (so its derived length is ``steps - 1``). ``changes`` sets keys (a value of None removes the key).
    Returns the arrays written.
    """
    rng = np.random.default_rng(seed)
    arrays: dict[str, Any] = {"format": np.array("mibench-npz"), "version": np.array(1), "name": np.array("mine"),
                              "task": np.array(task), "modalities": np.array(modalities)}
    if task == "classification":
        arrays["classes"] = np.array(["calm", "tense", "upbeat"])
    for s, n in SIZES.items():
        for j, m in enumerate(modalities):
            arrays[f"{s}/{m}"] = rng.uniform(0.5, 1.5, size=(n, steps, 3 + j)).astype(np.float32)
        y = np.arange(n) % 3 if task == "classification" else rng.uniform(-1, 1, size=n).astype(np.float32)
        arrays[f"{s}/labels"] = y
    arrays[f"train/{modalities[0]}"][0, -1] = 0.0
    for key, value in (changes or {}).items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return arrays
