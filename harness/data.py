"""The data model every box shares: a dataset spec, a batch of samples, a dataset of three splits.

Missingness is always the explicit boolean mask ``present [N, M]`` (M = number of modalities, in the spec's
order), never a magic value in the features. When a modality is removed (:meth:`Batch.drop`), its features are
also zeroed, so a method that ignores ``present`` cannot read removed information by accident; zero is *not*
a sentinel a method may test for, ``present`` is the only truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

Task = Literal["regression", "classification"]
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """What a method needs to know to build itself for a dataset.

    ``dims[m]`` is the feature size D_m of ``modalities[m]`` and ``seq_lens[m]`` its padded length T_m
    (1 = utterance-level features); ``classes`` is empty for regression;
    ``label_range`` bounds regression labels (MOSI/MOSEI: (-3, 3)); ``source`` says where the data came from.
    """

    name: str
    modalities: tuple[str, ...]
    dims: tuple[int, ...]
    seq_lens: tuple[int, ...]
    task: Task
    classes: tuple[str, ...] = ()
    label_range: tuple[float, float] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not self.modalities or not len(self.modalities) == len(self.dims) == len(self.seq_lens):
            raise ValueError(
                f"{self.name}: modalities {self.modalities}, dims {self.dims} and seq_lens {self.seq_lens} must match"
            )
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"{self.name}: duplicate modality names in {self.modalities}")
        if self.task == "classification" and len(self.classes) < 2:
            raise ValueError(f"{self.name}: a classification dataset needs at least 2 classes")
        if self.task not in ("regression", "classification"):
            raise ValueError(f"{self.name}: task must be 'regression' or 'classification', got {self.task!r}")

    @property
    def num_outputs(self) -> int:
        """1 for regression, the number of classes for classification."""
        return 1 if self.task == "regression" else len(self.classes)

    def index(self, modality: str) -> int:
        try:
            return self.modalities.index(modality)
        except ValueError:
            raise ValueError(
                f"Dataset {self.name!r} has no modality {modality!r}; its modalities are {list(self.modalities)}"
            ) from None


@dataclass(frozen=True)
class Batch:
    """N samples: a whole split or a mini-batch. Immutable: every transform returns a new Batch.

    - ``x[m]``: float32 ``[N, T_m, D_m]`` per modality (T_m = 1 for utterance-level features), zero-padded
      after ``lengths[m]``.
    - ``lengths[m]``: int64 ``[N]``, 1 <= lengths <= T_m.
    - ``present``: bool ``[N, M]``, column order = ``x``'s key order = the spec's modality order.
    - ``y``: float32 ``[N]`` (regression) or int64 ``[N]`` class indices (classification).
    """

    x: Mapping[str, Tensor]
    lengths: Mapping[str, Tensor]
    present: Tensor
    y: Tensor

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.x)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        return self.y.device

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            x={m: v.to(device) for m, v in self.x.items()},
            lengths={m: v.to(device) for m, v in self.lengths.items()},
            present=self.present.to(device),
            y=self.y.to(device),
        )

    def index(self, idx: Tensor) -> Batch:
        """Rows ``idx`` (an int64 index tensor on the batch's device; no host sync)."""
        return Batch(
            x={m: v[idx] for m, v in self.x.items()},
            lengths={m: v[idx] for m, v in self.lengths.items()},
            present=self.present[idx],
            y=self.y[idx],
        )

    def drop(self, keep: Tensor) -> Batch:
        """Remove modalities: ``keep`` bool ``[N, M]`` (or ``[M]``, broadcast) marks what stays available.

        ``present`` becomes ``present & keep`` and removed features are zeroed (see the module docstring).
        """
        keep = keep.to(device=self.present.device, dtype=torch.bool).expand_as(self.present)
        present = self.present & keep
        x = {m: v * present[:, j].view(-1, 1, 1).to(v.dtype) for j, (m, v) in enumerate(self.x.items())}
        return replace(self, x=x, present=present)

    def replace_features(self, x: Mapping[str, Tensor]) -> Batch:
        """A copy with some modalities' features replaced (corruptions use this); shapes must not change."""
        for m, v in x.items():
            if m not in self.x or v.shape != self.x[m].shape:
                raise ValueError(f"replace_features: {m!r} must keep shape {tuple(self.x[m].shape)}")
        return replace(self, x={**self.x, **x})

    @staticmethod
    def cat(batches: Sequence[Batch]) -> Batch:
        """Concatenate along N (used to evaluate many conditions in large batches)."""
        first = batches[0]
        return Batch(
            x={m: torch.cat([b.x[m] for b in batches]) for m in first.x},
            lengths={m: torch.cat([b.lengths[m] for b in batches]) for m in first.lengths},
            present=torch.cat([b.present for b in batches]),
            y=torch.cat([b.y for b in batches]),
        )

    def validate(self, spec: DatasetSpec, where: str) -> None:
        """Raise ``ValueError`` naming ``where`` and the offending key if the batch does not fit ``spec``."""
        n = len(self)
        if tuple(self.x) != spec.modalities or tuple(self.lengths) != spec.modalities:
            raise ValueError(f"{where}: modalities {list(self.x)} do not match the spec {list(spec.modalities)}")
        for m, d in zip(spec.modalities, spec.dims, strict=True):
            v, ln = self.x[m], self.lengths[m]
            t = spec.seq_lens[spec.index(m)]
            if v.shape != (n, t, d):
                raise ValueError(f"{where}: {m!r} features have shape {tuple(v.shape)}, expected [{n}, {t}, {d}]")
            if v.dtype != torch.float32:
                raise ValueError(f"{where}: {m!r} features must be float32, got {v.dtype}")
            if not torch.isfinite(v).all():
                raise ValueError(f"{where}: {m!r} features contain NaN or inf")
            if ln.shape != (n,) or (n and (int(ln.min()) < 1 or int(ln.max()) > v.shape[1])):
                raise ValueError(f"{where}: {m!r} lengths must be [{n}] integers in [1, {v.shape[1]}]")
        if self.present.shape != (n, len(spec.modalities)) or self.present.dtype != torch.bool:
            raise ValueError(f"{where}: present must be bool [{n}, {len(spec.modalities)}]")
        empty = (~self.present.any(1)).nonzero().flatten().tolist()
        if empty:  # nothing to predict from: every protocol would score a guess, so such data are refused
            raise ValueError(f"{where}: {len(empty)} sample(s) have no modality present (row {empty[0]} first); "
                             f"remove them from the data before running")
        self._validate_labels(spec, where)

    def _validate_labels(self, spec: DatasetSpec, where: str) -> None:
        y = self.y
        if y.shape != (len(self),):
            raise ValueError(f"{where}: labels have shape {tuple(y.shape)}, expected [{len(self)}]")
        if spec.task == "classification":
            if y.dtype != torch.int64 or (len(y) and (int(y.min()) < 0 or int(y.max()) >= len(spec.classes))):
                raise ValueError(f"{where}: class labels must be int64 in [0, {len(spec.classes) - 1}]")
        else:
            if y.dtype != torch.float32 or not torch.isfinite(y).all():
                raise ValueError(f"{where}: regression labels must be finite float32")
            lo, hi = spec.label_range or (-np.inf, np.inf)
            if len(y) and (float(y.min()) < lo or float(y.max()) > hi):
                raise ValueError(f"{where}: labels span [{float(y.min())}, {float(y.max())}], outside [{lo}, {hi}]")


@dataclass(frozen=True)
class Dataset:
    """A dataset: its spec, three splits, per-split sample ids, and provenance recorded in ``run.json``."""

    spec: DatasetSpec
    train: Batch
    valid: Batch
    test: Batch
    ids: Mapping[str, np.ndarray] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Batch:
        if name not in SPLITS:
            raise ValueError(f"Unknown split {name!r}; valid: {SPLITS}")
        return getattr(self, name)

    def validate(self) -> Dataset:
        for s in SPLITS:
            batch = self.split(s)
            batch.validate(self.spec, f"{self.spec.name}/{s}")
            if s in self.ids and len(self.ids[s]) != len(batch):
                raise ValueError(f"{self.spec.name}/{s}: {len(self.ids[s])} ids for {len(batch)} samples")
        return self

    def to(self, device: torch.device | str) -> Dataset:
        return replace(self, train=self.train.to(device), valid=self.valid.to(device), test=self.test.to(device))


IEMOCAP_VIEWS = ("4", "6", "binary:neutral", "binary:happy", "binary:sad", "binary:angry")


@dataclass(frozen=True)
class DataOptions:
    """How to obtain a dataset and which preprocessing that changes numbers to apply (all recorded in provenance).

    - ``preset``: size of a synthetic dataset; ``path``: an explicit file (or folder to search); ``data_dir``: a
      folder searched for the conventional file names (see ``docs/datasets.md``); ``seed``: data seed
      (synthetic data, IEMOCAP's validation dialogues).
    - ``nan_value``: what NaN and +-inf feature values in a file are replaced with (MMSA and MulT use 0).
    - ``pool``: replace each sequence by the mean over its valid steps (T becomes 1).
    - ``standardize``: per-feature z-scores with mean and std from the training split's valid steps only.
    - ``iemocap_classes``: the IEMOCAP label view, one of ``IEMOCAP_VIEWS`` (see ``harness/datasets/labels.py``).
    - ``trust_pickle``: unpickle without restrictions; only ``mibench data convert --trust-pickle`` sets it.
    - ``load_limit``: bytes a file may make the reader allocate (None: relative to its size, see
      ``harness/datasets/limits.py``); not part of the data, so not of the run identity either.
    """

    preset: str = "small"
    path: Path | None = None
    data_dir: Path | None = None
    seed: int = 0
    nan_value: float = 0.0
    pool: bool = False
    standardize: bool = False
    iemocap_classes: str = "4"
    trust_pickle: bool = False
    load_limit: int | None = None

    def __post_init__(self) -> None:
        if self.iemocap_classes not in IEMOCAP_VIEWS:
            raise ValueError(f"iemocap_classes must be one of {list(IEMOCAP_VIEWS)}, got {self.iemocap_classes!r}")
        if not np.isfinite(self.nan_value):
            raise ValueError(f"nan_value must be a finite number, got {self.nan_value!r}")


def batch_from_numpy(
    x: Mapping[str, np.ndarray],
    y: np.ndarray,
    lengths: Mapping[str, np.ndarray] | None = None,
    present: np.ndarray | None = None,
) -> Batch:
    """Build a CPU Batch from numpy arrays (loaders and tests use this); lengths default to full T."""
    n = len(y)
    xt = {m: torch.as_tensor(np.asarray(v, dtype=np.float32)) for m, v in x.items()}
    lt = {
        m: torch.as_tensor(np.asarray(lengths[m], dtype=np.int64))
        if lengths is not None and m in lengths
        else torch.full((n,), v.shape[1], dtype=torch.int64)
        for m, v in xt.items()
    }
    pt = torch.ones(n, len(xt), dtype=torch.bool) if present is None else torch.as_tensor(present, dtype=torch.bool)
    yt = torch.as_tensor(y)
    yt = yt.to(torch.float32) if yt.is_floating_point() else yt.to(torch.int64)
    return Batch(x=xt, lengths=lt, present=pt, y=yt)
