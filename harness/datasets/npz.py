"""mibench's own ``.npz`` layout (version 1): one uncompressed numpy archive per dataset, no pickles inside.

Keys (``M`` modalities, splits ``train``, ``valid``, ``test``)::

    format                 str    "mibench-npz"
    version                int    1
    name                   str    dataset name, e.g. "mosi"
    task                   str    "regression" or "classification"
    modalities             (M,) str    names, in the order of the present mask's columns, e.g. [text, audio,
                                       vision] or [language, acoustic]; see :func:`check_modalities`
    classes                (C,) str    class names by index; optional for regression (no classes)
    label_range            (2,) float  optional, regression: labels must lie inside (absent: the labels' own
                                       extent is taken, with a warning; mosi/mosei always need [-3, 3])
    provenance             str    optional JSON: where the data came from (written by ``mibench data convert``)
    <split>/<m>            (N, T_m, D_m) float32 features, zero after each sample's length
    <split>/<m>_lengths    (N,) whole numbers in [0, T_m]   optional: derived from non-zero rows when absent
    <split>/labels         (N,) float32 scores or int64 class indices
    <split>/ids            (N,) str     optional
    <split>/present        (N, M) bool  optional, all True when absent (which modalities were recorded)

Strings are numpy unicode arrays, so the file loads with ``allow_pickle=False``. Files written by
:func:`save_npz` hold exactly the tensors the loader produced, so reading one back gives identical tensors.

Reading is bounded (:class:`BoundedNpz`): every member's ``.npy`` header is read first, and the sizes it
declares are checked against the bytes the archive stores for it and against the file's budget
(:mod:`harness.datasets.limits`) before any array is allocated; a deflated member is inflated into exactly the
declared size and no further. Features and labels must be real numbers (integers, floats or booleans): complex
values would lose their imaginary part, and object arrays would need pickle.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, cast

import numpy as np

from harness.data import SPLITS, Dataset, Task
from harness.datasets.formats import RawData, RawSplit, is_real, whole_lengths
from harness.datasets.limits import NPZ_RATIO, LoadLimitError, budget, fmt, refusal

FORMAT, VERSION = "mibench-npz", 1
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
# A modality may not be called like the split's other keys, nor like the condition names protocols build
# from modality names ("full", "all", "a+b"), nor end in "_lengths" (its own lengths key would be ambiguous).
RESERVED = frozenset({"labels", "ids", "present", "full", "all"})


def save_npz(dataset: Dataset, path: Path) -> None:
    """Write ``dataset`` (its tensors as they are, plus its provenance) to ``path`` atomically."""
    spec = dataset.spec
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT), "version": np.array(VERSION), "name": np.array(spec.name),
        "task": np.array(spec.task), "modalities": np.array(spec.modalities, dtype=str),
        "classes": np.array(spec.classes, dtype=str),
        "provenance": np.array(json.dumps(dict(dataset.provenance), default=str)),
    }
    if spec.label_range is not None:
        arrays["label_range"] = np.array(spec.label_range, dtype=np.float64)
    for s in SPLITS:
        batch = dataset.split(s).to("cpu")
        for m in spec.modalities:
            arrays[f"{s}/{m}"] = batch.x[m].numpy()
            arrays[f"{s}/{m}_lengths"] = batch.lengths[m].numpy()
        arrays[f"{s}/labels"] = batch.y.numpy()
        arrays[f"{s}/present"] = batch.present.numpy()
        if s in dataset.ids:
            arrays[f"{s}/ids"] = np.asarray(dataset.ids[s]).astype(str)
    fd, tmp = tempfile.mkstemp(dir=Path(path).parent, prefix=f".{Path(path).name}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class BoundedNpz:
    """The arrays of an ``.npz`` archive (``files``, ``z[key]``, like ``np.load``'s NpzFile), read so that the
    file can never make mibench allocate more than it declares, nor declare more than its budget."""

    def __init__(self, path: Path, limit: int | None = None) -> None:
        self.path = Path(path)
        self.zip = zipfile.ZipFile(self.path)
        try:
            self._check(limit)
        except BaseException:
            self.zip.close()
            raise
        self._cache: dict[str, np.ndarray] = {}

    def _check(self, limit: int | None) -> None:
        self.infos = {i.filename.removesuffix(".npy"): i for i in self.zip.infolist()}
        self.files = list(self.infos)
        self.headers = {key: self._header(key, info) for key, info in self.infos.items()}
        declared = sum(h[3] for h in self.headers.values())
        allowed = budget(self.path.stat().st_size, NPZ_RATIO, limit)
        if declared > allowed:
            key = max(self.headers, key=lambda k: self.headers[k][3])
            shape, _, dtype, _ = self.headers[key]
            raise refusal(self.path, declared, allowed, f"its arrays (the largest, {key}: "
                          f"{' x '.join(map(str, shape)) or 'scalar'} {dtype}, {fmt(self.headers[key][3])})")

    def _header(self, key: str, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], bool, np.dtype, int]:
        """(shape, fortran order, dtype, bytes) from the member's header, checked against the archive."""
        with self.zip.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"{key}: .npy format version {version} is not supported (1.0 or 2.0)")
            offset = fh.tell()
        if dtype.hasobject:
            raise ValueError(f"{self.path}: holds object arrays ({key}), which would need pickle; store strings as "
                             f"numpy unicode arrays (see docs/datasets.md)")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else dtype.itemsize
        if info.file_size != offset + nbytes:
            raise ValueError(f"{self.path}: {key}: declares {' x '.join(map(str, shape)) or 'a scalar'} {dtype} "
                             f"({fmt(nbytes)}) but the archive holds {fmt(max(info.file_size - offset, 0))} for it "
                             f"(truncated or corrupt .npz)")
        return tuple(shape), bool(fortran), dtype, nbytes

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = self._load(key)
        return self._cache[key]

    def _load(self, key: str) -> np.ndarray:
        shape, fortran, dtype, nbytes = self.headers[key]
        buf = np.empty(nbytes, dtype=np.uint8)
        with self.zip.open(self.infos[key]) as fh:
            fh.seek(self.infos[key].file_size - nbytes) if nbytes else None
            view, filled = memoryview(buf), 0
            while filled < nbytes:
                got = fh.readinto(view[filled:])
                if not got:
                    raise EOFError(f"{key}: ends after {filled} of {nbytes} bytes")
                filled += got
        return buf.view(dtype).reshape(shape, order="F" if fortran else "C") if nbytes else np.zeros(shape, dtype)

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> BoundedNpz:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _get(z: Any, key: str, path: Path) -> np.ndarray:
    if key not in z.files:
        raise ValueError(f"{path}: key {key!r} is missing (a mibench .npz needs it; see docs/datasets.md)")
    return z[key]


def read_npz(path: Path, limit: int | None = None) -> RawData:
    """A mibench ``.npz`` -> RawData; one-line ``ValueError`` naming the file and key for anything malformed.
    ``limit``: the user's ``--load-limit`` in bytes (default: the file's budget, see :mod:`limits`)."""
    try:
        with BoundedNpz(path, limit) as z:
            return _read(z, path)
    except LoadLimitError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise ValueError(f"{path}: truncated or corrupt .npz ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        message = str(exc)
        if not message.startswith(str(path)):  # numpy's header parser: say which file
            raise ValueError(f"{path}: truncated or corrupt .npz ({message})") from None
        raise


def _read(z: Any, path: Path) -> RawData:
    if str(_get(z, "format", path)) != FORMAT or int(_get(z, "version", path)) != VERSION:
        raise ValueError(f"{path}: format/version: expected {FORMAT!r} version {VERSION}")
    task = str(_get(z, "task", path))
    if task not in ("regression", "classification"):
        raise ValueError(f"{path}: task: expected 'regression' or 'classification', got {task!r}")
    label_range = None
    if "label_range" in z.files:
        lr = z["label_range"]
        if lr.shape != (2,) or not is_real(lr.dtype) or not np.isfinite(lr).all() or not lr[0] <= lr[1]:
            raise ValueError(f"{path}: label_range: expected finite (low, high), got {lr.tolist()}")
        label_range = (float(lr[0]), float(lr[1]))
    modalities = check_modalities(_get(z, "modalities", path), path)
    classes = _classes(z, path, task)
    splits = {s: _split(z, s, path, task, classes, label_range, modalities) for s in SPLITS}
    notes: dict[str, Any] = {"name_in_file": str(_get(z, "name", path))}
    if "provenance" in z.files:
        try:
            notes["converted_from"] = json.loads(str(z["provenance"]))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: provenance: not valid JSON ({exc})") from None
    return RawData("mibench-npz", splits, cast(Task, task), classes, label_range, notes=notes)


def _classes(z: Any, path: Path, task: str) -> tuple[str, ...]:
    """Class names by index; a regression file may leave the key out (an empty string array is awkward to write)."""
    if task == "regression" and "classes" not in z.files:
        return ()
    classes = tuple(str(c) for c in np.atleast_1d(_get(z, "classes", path)))
    if task == "classification" and len(classes) < 2:
        raise ValueError(f"{path}: classes: a classification file needs at least 2 class names, got {list(classes)}")
    return classes


def check_modalities(raw: np.ndarray, path: Path) -> tuple[str, ...]:
    """The file's modality names, in its order; any names work if they can be keys and condition names."""
    names = tuple(str(m) for m in np.atleast_1d(raw))
    bad = [m for m in names if not NAME.fullmatch(m) or m in RESERVED or m.endswith("_lengths")]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(f"{path}: modalities: expected one or more distinct names made of letters, digits, '_' "
                         f"and '-' (starting with a letter; not {', '.join(sorted(RESERVED))} or *_lengths), "
                         f"got {list(names)}")
    return names


def _split(z: Any, s: str, path: Path, task: str, classes: tuple[str, ...],
           label_range: tuple[float, float] | None, modalities: tuple[str, ...]) -> RawSplit:
    y = _labels(_get(z, f"{s}/labels", path), f"{path}: {s}/labels", task, classes, label_range)
    n = len(y)
    x, lengths = {}, {}
    for m in modalities:
        x[m] = _get(z, f"{s}/{m}", path)
        if x[m].ndim != 3 or len(x[m]) != n or 0 in x[m].shape[1:] or not is_real(x[m].dtype):
            raise ValueError(f"{path}: {s}/{m}: expected real-valued features ({n}, T, D), got {x[m].dtype} "
                             f"{x[m].shape}")
        key = f"{s}/{m}_lengths"
        lengths[m] = whole_lengths(z[key], f"{path}: {key}", n) if key in z.files else None
    ids = z[f"{s}/ids"].astype(str) if f"{s}/ids" in z.files else np.array([f"{s}/{i}" for i in range(n)])
    if ids.shape != (n,):
        raise ValueError(f"{path}: {s}/ids: expected ({n},) ids, got {ids.shape}")
    present = z[f"{s}/present"] if f"{s}/present" in z.files else None
    if present is not None and (present.shape != (n, len(modalities)) or present.dtype != bool):
        raise ValueError(f"{path}: {s}/present: expected bool ({n}, {len(modalities)}) with columns "
                         f"{list(modalities)}, got {present.dtype} {present.shape}")
    return RawSplit(x, lengths, y, ids, present)


def _labels(y: np.ndarray, where: str, task: str, classes: tuple[str, ...],
            label_range: tuple[float, float] | None) -> np.ndarray:
    if y.ndim != 1 or not is_real(y.dtype):
        raise ValueError(f"{where}: expected real-valued labels (N,), got {y.dtype} {y.shape}")
    if task == "classification":
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() >= len(classes))):
            raise ValueError(f"{where}: labels out of range: class indices must be integers in "
                             f"[0, {len(classes) - 1}] ({len(classes)} classes)")
        return y.astype(np.int64)
    if not np.isfinite(y).all():
        raise ValueError(f"{where}: labels are NaN or infinite")
    if label_range is not None and len(y) and (y.min() < label_range[0] or y.max() > label_range[1]):
        raise ValueError(f"{where}: labels out of range: they span [{y.min():g}, {y.max():g}], outside "
                         f"[{label_range[0]:g}, {label_range[1]:g}]")
    return y.astype(np.float32)
