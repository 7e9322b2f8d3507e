"""Synthetic stand-ins for CMU-MOSI and IEMOCAP, the embedded default (the real corpora cannot be shipped).

Both are deterministic functions of (name, preset, seed). The generative model is stated so that a reader
knows which robustness properties the data can reveal.

**synth-mosi** (regression in [-3, 3]). Each sample has three independent standard-normal latent factors:
``a`` (verbal sentiment), ``b`` (a prosodic cue) and ``c`` (a facial cue). The true sentiment is
``s = 1.3 a + 0.45 b + 0.45 c``. Annotators each give ``round(s + N(0, 1.1))`` clipped to [-3, 3], and the
label is the mean over 3, 4 or 5 annotators, so exact zeros, halves and thirds occur as in MOSI.
Modalities observe: text ``a`` (clean), audio ``0.5 a + b``, vision ``0.5 a + c`` (noisier). Text is thus the
most informative modality; audio and vision are partly *redundant* with text (through ``a``) and partly
*complementary* (``b``, ``c`` are invisible to text). A method that loses text can recover part of ``a``
from the other two; no method can recover ``b`` or ``c`` without their modality.

**synth-iemocap** (4 classes: happy, sad, angry, neutral with IEMOCAP's 4-class imbalance). Classes sit at
valence/arousal centroids happy (+1, +1), sad (-1, -1), angry (-1, +1), neutral (0, 0). Text observes valence
well and arousal weakly, audio observes arousal well and valence weakly, vision observes both moderately; all
three are informative to different degrees and each alone confuses some pair of classes (text: happy vs
neutral-ish arousal; audio: sad vs neutral valence). Features are utterance-level (T = 1), as in the
DialogueRNN/MMGCN IEMOCAP release.

**Features.** Each modality's observed signal, with a few per-sample nuisance factors (speaker/style), goes
through a fixed random two-layer map (tanh) to D_m dims. For sequences the signal is spread over time by an
envelope that peaks at a few random salient steps, steps beyond each sample's length are zero, and every
valid step gets white noise, so temporal pooling matters and no single step carries everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.data import Batch, DataOptions, Dataset, DatasetSpec, batch_from_numpy
from harness.datasets.preprocess import apply_options
from harness.registry import DATASETS
from harness.seeding import stable_seed

MODALITIES = ("text", "audio", "vision")


@dataclass(frozen=True)
class Preset:
    sizes: tuple[int, int, int]  # train, valid, test
    dims: tuple[int, int, int]
    seq_lens: tuple[int, int, int]


MOSI_PRESETS = {
    "tiny": Preset((96, 48, 64), (16, 5, 8), (8, 10, 10)),
    "small": Preset((800, 200, 400), (64, 5, 20), (16, 20, 20)),
    "full": Preset((1284, 229, 686), (768, 5, 20), (50, 50, 50)),
}
IEMOCAP_PRESETS = {
    "tiny": Preset((120, 48, 80), (16, 12, 12), (1, 1, 1)),
    "small": Preset((1600, 400, 800), (100, 64, 64), (1, 1, 1)),
    "full": Preset((3432, 858, 1241), (100, 100, 512), (1, 1, 1)),
}
IEMOCAP_CLASSES = ("happy", "sad", "angry", "neutral")
IEMOCAP_SHARES = np.array([1636, 1084, 1103, 1708]) / 5531  # happy+excited, sad, angry, neutral
CENTROIDS = np.array([[1.0, 1.0], [-1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]])  # valence, arousal


def _preset(presets: dict[str, Preset], name: str, dataset: str) -> Preset:
    if name not in presets:
        raise ValueError(f"Unknown preset {name!r} for {dataset}; valid presets: {sorted(presets)}")
    return presets[name]


def _render(signal: np.ndarray, dim: int, seq_len: int, noise: float, rng: np.random.Generator,
            proj: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Latent ``signal [N, k]`` -> features ``[N, T, dim]`` and lengths ``[N]`` (see module docstring)."""
    n = len(signal)
    w1, w2 = proj
    if seq_len == 1:
        env, lengths = np.ones((n, 1)), np.ones(n, dtype=np.int64)
    else:
        lengths = rng.integers((seq_len + 1) // 2, seq_len + 1, size=n)
        peaks = rng.uniform(0, 1, size=(n, 3)) * lengths[:, None]
        t = np.arange(seq_len)[None, :, None]
        env = np.exp(-0.5 * ((t - peaks[:, None, :]) / 1.5) ** 2).max(-1) * 1.5 + 0.3
    hidden = np.tanh(np.einsum("nt,nk,kh->nth", env, signal, w1))
    x = hidden @ w2 + noise * rng.standard_normal((n, seq_len, dim))
    x[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0.0
    return x.astype(np.float32), lengths


def _projections(rng: np.random.Generator, k: int, dims: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    hid = 32
    return [(rng.standard_normal((k, hid)) / np.sqrt(k), rng.standard_normal((hid, d)) / np.sqrt(hid)) for d in dims]


def _features(signals: list[np.ndarray], noises: tuple[float, ...], preset: Preset, rng: np.random.Generator,
              proj: list) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    n = len(signals[0])
    x, lengths = {}, {}
    for m, sig, noise, dim, t, p in zip(MODALITIES, signals, noises, preset.dims, preset.seq_lens, proj, strict=True):
        nuisance = rng.standard_normal((n, 3))
        x[m], lengths[m] = _render(np.column_stack([sig, nuisance]), dim, t, noise, rng, p)
    return x, lengths


def _mosi_split(n: int, preset: Preset, rng: np.random.Generator, proj: list) -> Batch:
    a, b, c = rng.standard_normal((3, n))
    s = 1.3 * a + 0.45 * b + 0.45 * c
    k = rng.choice([3, 4, 5], size=n, p=[0.4, 0.2, 0.4])
    votes = np.clip(np.round(s[:, None] + 1.1 * rng.standard_normal((n, 5))), -3, 3)
    label = np.where(np.arange(5)[None, :] < k[:, None], votes, 0).sum(1) / k
    signals = [np.column_stack([a]), np.column_stack([0.5 * a + b]), np.column_stack([0.5 * a + c])]
    x, lengths = _features(signals, (0.5, 0.8, 0.8), preset, rng, proj)
    return batch_from_numpy(x, label.astype(np.float32), lengths)


def _iemocap_split(n: int, preset: Preset, rng: np.random.Generator, proj: list) -> Batch:
    y = rng.choice(len(IEMOCAP_CLASSES), size=n, p=IEMOCAP_SHARES)
    va = CENTROIDS[y] + 0.45 * rng.standard_normal((n, 2))
    signals = [
        np.column_stack([va[:, 0], 0.3 * va[:, 1]]) + 0.5 * rng.standard_normal((n, 2)),
        np.column_stack([0.3 * va[:, 0], va[:, 1]]) + 0.5 * rng.standard_normal((n, 2)),
        np.column_stack([0.7 * va[:, 0], 0.7 * va[:, 1]]) + 0.7 * rng.standard_normal((n, 2)),
    ]
    x, lengths = _features(signals, (0.3, 0.4, 0.5), preset, rng, proj)
    return batch_from_numpy(x, y.astype(np.int64), lengths)


def _assemble(spec: DatasetSpec, splits: list[Batch], options: DataOptions) -> Dataset:
    ids = {s: np.array([f"{spec.name}/{s}/{i:05d}" for i in range(len(b))]) for s, b in zip(
        ("train", "valid", "test"), splits, strict=True)}
    prov = {"loader": "synthetic", "preset": options.preset, "data_seed": options.seed, "generator": __name__}
    return apply_options(Dataset(spec, *splits, ids=ids, provenance=prov).validate(), options)


@DATASETS.register("synth-mosi")
def synth_mosi(options: DataOptions) -> Dataset:
    """Synthetic MOSI-like sentiment regression in [-3, 3] (text strongest; audio/vision partly complementary)."""
    preset = _preset(MOSI_PRESETS, options.preset, "synth-mosi")
    rng = np.random.default_rng(stable_seed("synth-mosi", options.preset, options.seed))
    proj = _projections(rng, 4, preset.dims)
    splits = [_mosi_split(n, preset, rng, proj) for n in preset.sizes]
    spec = DatasetSpec("synth-mosi", MODALITIES, preset.dims, preset.seq_lens, "regression",
                       label_range=(-3.0, 3.0), source=f"synthetic ({__name__}, preset={options.preset})")
    return _assemble(spec, splits, options)


@DATASETS.register("synth-iemocap")
def synth_iemocap(options: DataOptions) -> Dataset:
    """Synthetic IEMOCAP-like 4-class emotion recognition, imbalanced; utterance-level features (T = 1)."""
    preset = _preset(IEMOCAP_PRESETS, options.preset, "synth-iemocap")
    rng = np.random.default_rng(stable_seed("synth-iemocap", options.preset, options.seed))
    proj = _projections(rng, 5, preset.dims)
    splits = [_iemocap_split(n, preset, rng, proj) for n in preset.sizes]
    spec = DatasetSpec("synth-iemocap", MODALITIES, preset.dims, preset.seq_lens, "classification",
                       classes=IEMOCAP_CLASSES, source=f"synthetic ({__name__}, preset={options.preset})")
    return _assemble(spec, splits, options)
