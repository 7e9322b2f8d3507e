"""The result store: one run directory per run identity.

Layout::

    RUN_DIR/run.json                  resolved config, versions, git commit, device, times, per-cell status
    RUN_DIR/records.jsonl             one typed row per (dataset, method, seed, protocol, condition, metric)
    RUN_DIR/predictions/<cell>.npz    per-sample test predictions under every condition, targets and ids

Crash safety: a cell's predictions are written to a temp file and renamed, then its records are appended as
complete lines in one write and fsynced (a failed write is cut back off, so the driver never leaves part of a
cell behind), then ``run.json`` (temp file + rename) marks the cell done with the number of records written.
Opening a store for writing (:meth:`RunStore.open`, under the run lock) repairs the directory:

* records of cells not marked done (a run killed mid-cell) and a partial trailing line are dropped;
* a done cell with an unreadable row, fewer rows than it wrote, or no predictions file is sent back to be
  redone (its rows are dropped with it), so no result is ever lost silently while its cell stays done;
* a row that repeats an earlier row of the same cell, protocol, condition and metric is dropped;
* temp files of interrupted writes (``.run.json.*``, ``.records.jsonl.*``, ``predictions/.*``) are removed.

So a run killed at any point resumes with exactly one record per (cell, condition, metric).
:meth:`RunStore.integrity_problems` reports the same findings without changing anything (``mibench status``).

Reading ``records.jsonl`` yourself: each complete line is one JSON row, but a run that is running or was killed
may hold rows of cells not yet done, and a kill inside the append may leave a cut-off last line. Read it with
``RunStore.read(RUN_DIR).records()`` (rows of done cells only, each once), or keep only lines that end in a
newline and whose ``cell`` is ``done`` in ``run.json`` (README, "Reading the output").
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.integrity import Scan, problems, scan_records

RECORD_COLUMNS = (
    "dataset", "method", "seed", "protocol", "protocol_version", "protocol_hash",
    "condition", "severity", "curve", "metric", "value", "n",
)


log = logging.getLogger(__name__)
LOCK_NAME = ".mibench.lock"  # harness.lock: one driver per run directory

# Execution environment recorded again on every resume (``run.json`` ``resumes``); the first run's stays on top.
RESUME_KEYS = ("versions", "git", "device", "device_name", "host", "config")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (temp file ``.NAME.*`` beside it, fsync, rename). An ``OSError``
    (full disk, read-only filesystem) names ``path`` and leaves the old file as it was."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def append_whole(path: Path, data: bytes) -> None:
    """Append ``data`` in one write and fsync; if that fails, cut the file back to its old length, so a full disk
    never leaves part of ``data`` behind (only a kill inside the write can, which the next open repairs)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException as exc:
            os.ftruncate(fd, start)
            if isinstance(exc, OSError):
                raise OSError(exc.errno, exc.strerror, str(path)) from None
            raise
    finally:
        os.close(fd)


def read_json(path: Path) -> dict[str, Any]:
    """``run.json`` as a dict; a one-line ``ValueError`` naming it when it is truncated, corrupt or unreadable."""
    try:
        meta = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); the run cannot be resumed "
                         "or reported from it: restore it from a backup, or start over with --overwrite") from None
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("cells", {}), dict):
        raise ValueError(f"{path} is not a mibench run.json (no table of cells); restore it or use --overwrite")
    return meta


def temp_files(root: Path) -> list[Path]:
    """Temp files of interrupted writes in a run directory (``atomic_write``'s ``.NAME.*``)."""
    found = [p for p in root.glob(".*") if p.name.startswith((".run.json.", ".records.jsonl."))]
    found += [p for p in (root / "predictions").glob(".*") if p.is_file()]
    return sorted(found)


def clear_dir(root: Path, keep: Iterable[str] = (LOCK_NAME,)) -> None:
    """Remove everything in ``root`` but the names in ``keep`` (``--overwrite``: the lock stays held)."""
    for path in root.iterdir():
        if path.name in set(keep):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


class RunExistsError(RuntimeError):
    """The output directory holds a run with a different config."""


class RunStore:
    """Read and write one run directory. Single writer (the runner); readers only read."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.run_path = self.root / "run.json"
        self.records_path = self.root / "records.jsonl"
        self.pred_dir = self.root / "predictions"
        self.meta: dict[str, Any] = {}

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, identity: Mapping[str, Any], meta: Mapping[str, Any],
             defaults: Mapping[str, Any] | None = None) -> RunStore:
        """Create the run directory, or reopen it to resume when it holds the same identity.

        A key missing from the stored identity (an option added to mibench after the run was made) compares as
        its value in ``defaults``: the behaviour the older version had.
        """
        store = cls(root)
        if store.run_path.exists():
            store.meta = read_json(store.run_path)
            stored = {**{k: v for k, v in (defaults or {}).items() if k in identity}, **store.meta.get("identity", {})}
            if stored != dict(identity):
                raise RunExistsError(store.mismatch_message(identity, stored))
            store.meta["identity"] = {**store.meta.get("identity", {}), **identity}
            store.remove_temp_files()
            store.prune()
            # What the run started with stays as it was; each resume appends the environment it ran in.
            env = {k: meta[k] for k in RESUME_KEYS if k in meta}
            store.meta["resumes"] = [*store.meta.get("resumes", []), {"at": now(), **env}]
        else:
            if store.root.exists() and any(p.name != LOCK_NAME for p in store.root.iterdir()):
                raise RunExistsError(f"{store.root} exists, is not empty and holds no run.json; choose another --out")
            store.pred_dir.mkdir(parents=True, exist_ok=True)
            store.meta = {**meta, "identity": dict(identity), "cells": {}, "started_at": now()}
        store.pred_dir.mkdir(parents=True, exist_ok=True)
        store.save_meta()
        return store

    @classmethod
    def read(cls, root: Path) -> RunStore:
        store = cls(root)
        if store.root.exists() and not store.root.is_dir():
            raise FileNotFoundError(f"{store.root} is a file, not a mibench run directory")
        if not store.run_path.exists():
            raise FileNotFoundError(f"{store.root} is not a mibench run directory (no run.json)")
        store.meta = read_json(store.run_path)
        return store

    def mismatch_message(self, identity: Mapping[str, Any], old: Mapping[str, Any]) -> str:
        diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        details = "; ".join(f"{k}: stored {old.get(k)!r}, now {identity.get(k)!r}" for k in diff)
        why = (" The data differ from the data the run started with (a replaced file, or a mibench version whose "
               "loader or generator gives other numbers)." if "data" in diff else "")
        return (f"{self.root} holds a run with a different config ({details}).{why} Re-run with the same options "
                f"to resume it, choose another --out, or pass --overwrite to discard it.")

    # -- cells ---------------------------------------------------------------------------------------
    def cell_status(self, cell: str) -> str | None:
        return self.meta["cells"].get(cell, {}).get("status")

    def is_done(self, cell: str) -> bool:
        return self.cell_status(cell) == "done"

    def mark(self, cell: str, status: str, **info: Any) -> None:
        entry = self.meta["cells"].setdefault(cell, {})
        entry.update(status=status, updated_at=now(), **info)
        self.save_meta()

    def mark_many(self, cells: Iterable[str], status: str, **info: Any) -> None:
        """:meth:`mark` for several cells with one write of ``run.json``."""
        stamp = now()
        for cell in cells:
            self.meta["cells"].setdefault(cell, {}).update(status=status, updated_at=stamp, **info)
        self.save_meta()

    def write_cell(self, cell: str, records: Iterable[Mapping[str, Any]], predictions: Mapping[str, np.ndarray],
                   **info: Any) -> bool:
        """Persist a finished cell: predictions, then records, then the done mark (see module docstring).
        A cell already done is left as it is (False): a result never gets two sets of records."""
        if self.is_done(cell):
            log.warning("cell %s is already done; a second result for it was not stored", cell)
            return False
        rows = list(records)
        atomic_write(self.pred_dir / f"{cell}.npz", _npz_bytes(predictions))
        lines = "".join(json.dumps({**r, "cell": cell}, allow_nan=True) + "\n" for r in rows)
        size = self.records_path.stat().st_size if self.records_path.exists() else 0
        append_whole(self.records_path, lines.encode("utf-8"))
        before = dict(self.meta["cells"].get(cell, {}))
        try:
            self.mark(cell, "done", n_records=len(rows), **info)
        except OSError:  # run.json could not be saved (full disk): take the rows back, the cell stays undone
            os.truncate(self.records_path, size)
            self.meta["cells"][cell] = before
            raise
        return True

    def save_meta(self) -> None:
        atomic_write(self.run_path, json.dumps(self.meta, indent=2, default=str).encode())

    def remove_temp_files(self) -> None:
        """Delete temp files of interrupted writes (only the lock holder may: nobody else is writing)."""
        for path in temp_files(self.root):
            log.info("removing %s, left by an interrupted write", path)
            path.unlink(missing_ok=True)

    def prune(self) -> None:
        """Repair ``records.jsonl`` and the cells it belongs to (see the module docstring); logs each repair."""
        if not self.records_path.exists():
            return
        scan = self.scan()
        if scan.clean:
            return
        for cell in sorted(scan.redo):
            found, written = scan.incomplete.get(cell, (None, None))
            why = ("its predictions file is missing" if cell in scan.no_predictions else
                   f"only {found} of its {written} records are readable" if cell in scan.incomplete else
                   "one of its records is unreadable")
            log.warning("cell %s was done but %s; it will be trained again", cell, why)
            self.meta["cells"][cell].update(status="queued", redo_reason=why, updated_at=now())
        if scan.duplicates:
            log.warning("dropping %d duplicated record(s) of %d cell(s)", sum(scan.duplicates.values()),
                        len(scan.duplicates))
        if scan.unreadable:
            log.warning("dropping %d unreadable line(s) of %s (line %d first)", len(scan.unreadable),
                        self.records_path, scan.unreadable[0])
        keep = [r for r in scan.rows if r["cell"] not in scan.redo]
        atomic_write(self.records_path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in keep).encode())

    # -- reading -------------------------------------------------------------------------------------
    def records(self) -> pd.DataFrame:
        """Rows of done cells, each once; a cell with unreadable or missing rows is left out (``mibench status``
        says so, the next run redoes it)."""
        if not self.records_path.exists():
            return pd.DataFrame(columns=[*RECORD_COLUMNS, "cell"])
        scan = self.scan()
        damaged = scan.blamed | set(scan.incomplete)
        if damaged:
            log.warning("%s: leaving out cell(s) with damaged records: %s", self.root, ", ".join(sorted(damaged)))
        rows = [r for r in scan.rows if r["cell"] not in damaged]
        return pd.DataFrame(rows, columns=[*RECORD_COLUMNS, "cell"])

    def scan(self) -> Scan:
        """Judge every line of ``records.jsonl`` against the cells of ``run.json`` (nothing is changed)."""
        return scan_records(self.records_path, self.meta.get("cells", {}), self.pred_dir)

    def integrity_problems(self) -> list[str]:
        """One line per problem found in the run directory (empty: none); read-only, for ``mibench status``.
        Every problem listed is repaired by the next ``mibench run`` of the same command."""
        return problems(self)

    def predictions(self, cell: str) -> dict[str, np.ndarray]:
        with np.load(self.pred_dir / f"{cell}.npz", allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()

