"""CMU-MOSI, CMU-MOSEI and IEMOCAP read from the feature files the community distributes.

The corpora cannot be shipped with mibench; users point it at the files they have (``--datasets
mosi=/path``, ``--data-dir``, ``$MIBENCH_DATA``; see :mod:`locate`). The flow is one-directional::

    locate -> sniff (npz / pickle, from the first bytes) -> safe unpickle -> detect layout -> read (RawData)
           -> sanitize (NaN/inf, lengths, padding; counted) -> Dataset.validate -> pool / standardise (optional)

Every number-changing step is recorded in ``Dataset.provenance`` (saved in ``run.json``). Anything that does
not fit (corrupt file, unknown layout, missing split or key, inconsistent sample counts, labels out of range,
lengths beyond the sequence, a file of the wrong dataset) is a one-line ``ValueError`` naming the file and key,
raised before any training starts.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
from pathlib import Path

import numpy as np

from harness.data import SPLITS, DataOptions, Dataset, DatasetSpec, batch_from_numpy
from harness.datasets import formats
from harness.datasets.dialogue import read_dialogue
from harness.datasets.formats import RawData
from harness.datasets.locate import locate
from harness.datasets.npz import read_npz, save_npz
from harness.datasets.preprocess import apply_options
from harness.datasets.safe_pickle import load_pickle
from harness.datasets.sanitize import Report, clean_split
from harness.registry import DATASETS

log = logging.getLogger(__name__)

LARGEST_LABEL = 1e18  # squared, still below float32's largest value (3.4e38)
ZIP, HDF5 = (b"PK\x03\x04", b"PK\x05\x06"), b"\x89HDF\r\n\x1a\n"


def sniff(path: Path) -> str:
    """``npz`` or ``pickle`` from the file's first bytes (never its name); ``ValueError`` for other content."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:  # /proc/self/mem, a directory, no permission, an I/O error
        raise ValueError(f"{path}: cannot be read as a data file ({exc.strerror or exc})") from None
    if not head:
        raise ValueError(f"{path}: the file is empty (truncated download?)")
    if head[:4] in ZIP:
        return "npz"
    if head == HDF5:
        raise ValueError(f"{path}: an HDF5 file (CMU-MultimodalSDK .csd or MMIN .h5 features); mibench reads the "
                         f"processed pickles or its own .npz (see docs/datasets.md)")
    if head.lstrip()[:1] == b"<":
        raise ValueError(f"{path}: looks like an HTML/XML page, not a feature file (a failed download?)")
    return "pickle"


def read_raw(path: Path, options: DataOptions, name: str | None = None) -> RawData:
    """Read any supported file into RawData, the layout decided by its contents.

    ``name`` (the dataset asked for, if known) only makes the advice in a refused pickle's error exact.
    """
    if sniff(path) == "npz":
        return read_npz(path, options.load_limit)
    obj = load_pickle(path, trust=options.trust_pickle, name=name, limit=options.load_limit)
    layout = formats.detect(obj, path)
    if layout == "mmsa":
        return formats.read_mmsa(obj, path)
    if layout == "mult":
        return formats.read_mult(obj, path, options.iemocap_classes)
    return read_dialogue(obj, path, options.iemocap_classes, options.seed)


def check_fits(raw: RawData, name: str, path: Path, options: DataOptions) -> None:
    """Refuse a file of the wrong kind for ``name`` (sentiment vs emotion) or of another IEMOCAP label view."""
    if name in ("mosi", "mosei") and raw.task != "regression":
        raise ValueError(f"{path}: holds emotion classes {list(raw.classes)} ({raw.layout} layout), not the "
                         f"sentiment scores {name!r} needs; use --datasets iemocap=...")
    if name == "iemocap" and raw.task != "classification":
        raise ValueError(f"{path}: holds sentiment scores ({raw.layout} layout), not IEMOCAP emotion labels; "
                         f"use --datasets mosi=... or mosei=...")
    if name in ("mosi", "mosei"):
        _check_sentiment(raw, name, path)
    source = raw.notes.get("converted_from")
    stored = source.get("label_view") if isinstance(source, dict) else None
    if name == "iemocap" and stored and stored != options.iemocap_classes:
        raise ValueError(f"{path}: label_view: the file holds the {stored!r} IEMOCAP view but iemocap_classes is "
                         f"{options.iemocap_classes!r}; convert the source again with --iemocap-classes "
                         f"{options.iemocap_classes}")


def _check_sentiment(raw: RawData, name: str, path: Path) -> None:
    """MOSI/MOSEI scores lie in [-3, 3] whatever the file declares (an .npz may declare another range, or none)."""
    lo, hi = formats.SENTIMENT_RANGE
    declared = raw.label_range
    if declared is not None and (declared[0] < lo or declared[1] > hi):
        raise ValueError(f"{path}: label_range: declares [{declared[0]:g}, {declared[1]:g}], but {name} sentiment "
                         f"scores lie in [{lo:g}, {hi:g}]; is this file another dataset? (use --datasets npz=...)")
    for split, sp in raw.splits.items():
        if len(sp.y) and (float(sp.y.min()) < lo or float(sp.y.max()) > hi):
            raise ValueError(f"{path}: {split}/labels: labels out of range: they span [{float(sp.y.min()):g}, "
                             f"{float(sp.y.max()):g}], but {name} sentiment scores lie in [{lo:g}, {hi:g}] (use "
                             f"--datasets npz=... for other data)")
    raw.label_range = formats.SENTIMENT_RANGE


def infer_range(raw: RawData, path: Path) -> None:
    """A regression file without a declared range: take the labels' own extent, with a warning (it checks
    nothing, so say so), and refuse labels so large that a squared loss overflows float32."""
    ys = np.concatenate([sp.y for sp in raw.splits.values()])
    lo, hi = float(ys.min()), float(ys.max())
    if max(abs(lo), abs(hi)) > LARGEST_LABEL:
        raise ValueError(f"{path}: labels span [{lo:g}, {hi:g}]: labels this large overflow a squared loss in "
                         f"float32; rescale them (and declare label_range)")
    log.warning("%s: no label_range declared; taking the labels' own extent [%g, %g] (declare label_range in the "
                "file so that out-of-range labels are caught)", path, lo, hi)
    raw.label_range = (lo, hi)
    raw.notes["label_range_inferred"] = [lo, hi]


def _pad_steps(x: np.ndarray, steps: int) -> np.ndarray:
    return x if x.shape[1] == steps else np.pad(x, ((0, 0), (0, steps - x.shape[1]), (0, 0)))


def build(raw: RawData, name: str, path: Path, options: DataOptions) -> Dataset:
    """Clean every split and assemble a validated Dataset with full provenance."""
    report, cleaned = Report(float(options.nan_value)), {}
    for s in SPLITS:
        if len(raw.splits[s].y) == 0:
            raise ValueError(f"{path}: {s}: the split is empty (no samples left)")
        cleaned[s] = clean_split(raw.splits[s], s, raw.aligned, report, f"{path}: {s}")
    dims, steps = [], []
    for m in raw.modalities:
        d = {s: cleaned[s][0][m].shape[2] for s in SPLITS}
        if len(set(d.values())) > 1:
            raise ValueError(f"{path}: {m}: the splits disagree on the feature size {d}")
        dims.append(d["train"])
        steps.append(max(cleaned[s][0][m].shape[1] for s in SPLITS))
    batches = {}
    for s in SPLITS:
        x = {m: _pad_steps(v, t) for (m, v), t in zip(cleaned[s][0].items(), steps, strict=True)}
        batches[s] = batch_from_numpy(x, raw.splits[s].y, cleaned[s][1], raw.splits[s].present)
    spec = DatasetSpec(name, raw.modalities, tuple(dims), tuple(steps), raw.task, raw.classes, raw.label_range,
                       source=f"{raw.layout} file {path}")
    provenance = {"loader": "real", "file": str(Path(path).resolve()), "bytes": Path(path).stat().st_size,
                  "sha256": _sha256(path), "format": raw.layout, "aligned": raw.aligned, **raw.notes,
                  **report.as_provenance()}
    ids = {s: raw.splits[s].ids for s in SPLITS}
    total = provenance["nonfinite_replaced"]["total"]
    log.info("%s: read %s (%s layout); %d NaN/inf values replaced with %g", name, path, raw.layout, total,
             options.nan_value)
    return Dataset(spec, batches["train"], batches["valid"], batches["test"], ids=ids, provenance=provenance
                   ).validate()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def load_file(name: str, path: Path, options: DataOptions) -> Dataset:
    """Read ``path`` as dataset ``name`` without the optional preprocessing (``mibench data convert`` uses this)."""
    raw = read_raw(path, options, name)
    check_fits(raw, name, path, options)
    if raw.task == "regression" and raw.label_range is None:
        infer_range(raw, path)
    return build(raw, name, path, options)


def convert(src: Path, dst: Path, name: str | None, options: DataOptions) -> Dataset:
    """Read ``src`` (any supported layout) and write it to ``dst`` in mibench's .npz layout; return the data.

    ``name`` may be omitted for IEMOCAP files (only IEMOCAP holds emotion classes). Sentiment files need it:
    MOSI and MOSEI come in the same layouts with the same keys and label range, so nothing in the file tells
    them apart reliably (sample counts would, until someone ships a subset).
    """
    if not Path(src).is_file():
        raise FileNotFoundError(f"{src}: no such file")
    raw = read_raw(src, options, name)
    if name is None:
        if raw.task != "classification":
            trust = " --trust-pickle" if options.trust_pickle else ""
            raise ValueError(f"{src}: holds sentiment scores ({raw.layout} layout), and MOSI and MOSEI files look "
                             f"alike, so say which dataset it is: --dataset mosi or mosei, e.g. 'mibench data "
                             f"convert mosi={shlex.quote(str(src))} {shlex.quote(str(dst))}{trust}'")
        name = "iemocap"
    check_fits(raw, name, src, options)
    if raw.task == "regression" and raw.label_range is None:
        infer_range(raw, src)
    data = build(raw, name, src, options)
    save_npz(data, dst)
    log.info("wrote %s", dst)
    return data


def load_real(name: str, options: DataOptions) -> Dataset:
    """Locate, read, clean and (optionally) pool/standardise dataset ``name``."""
    path = locate(name, options.path, options.data_dir)
    return apply_options(load_file(name, path, options), options)


@DATASETS.register("mosi")
def mosi(options: DataOptions) -> Dataset:
    """CMU-MOSI sentiment regression in [-3, 3], from your MMSA or CMU-MultimodalSDK/MulT file (docs/datasets.md)."""
    return load_real("mosi", options)


@DATASETS.register("mosei")
def mosei(options: DataOptions) -> Dataset:
    """CMU-MOSEI sentiment regression in [-3, 3], from your MMSA or CMU-MultimodalSDK/MulT file."""
    return load_real("mosei", options)


@DATASETS.register("iemocap")
def iemocap(options: DataOptions) -> Dataset:
    """IEMOCAP emotions (4-class, 6-class or one-vs-rest), from your MulT or DialogueRNN/MMGCN file."""
    return load_real("iemocap", options)


@DATASETS.register("npz")
def npz(options: DataOptions) -> Dataset:
    """Any dataset in mibench's own .npz layout: --datasets npz=FILE.npz (docs/datasets.md)."""
    if options.path is None:
        raise FileNotFoundError("The 'npz' dataset needs a file: --datasets npz=/path/to/file.npz")
    return apply_options(load_file("npz", locate("npz", options.path, None), options), options)
