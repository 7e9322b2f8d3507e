"""The result store: one run directory per run identity.

Layout::

    RUN_DIR/run.json                  resolved config, versions, git commit, device, times, per-cell status
    RUN_DIR/records.jsonl             one typed row per (dataset, method, seed, protocol, condition, metric)
    RUN_DIR/predictions/<cell>.npz    per-sample test predictions under every condition, targets and ids

Crash safety: a cell's predictions are written to a temp file and renamed, then its records are appended as
complete lines and fsynced, then ``run.json`` (temp file + rename) marks the cell done. Opening a store
drops every record whose cell is not marked done and any partial trailing line, so a run killed at any
point resumes with exactly one record per (cell, condition, metric).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RECORD_COLUMNS = (
    "dataset", "method", "seed", "protocol", "protocol_version", "protocol_hash",
    "condition", "severity", "curve", "metric", "value", "n",
)


# Execution environment recorded again on every resume (``run.json`` ``resumes``); the first run's stays on top.
RESUME_KEYS = ("versions", "git", "device", "device_name", "host", "config")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            store.meta = json.loads(store.run_path.read_text())
            stored = {**{k: v for k, v in (defaults or {}).items() if k in identity}, **store.meta.get("identity", {})}
            if stored != dict(identity):
                raise RunExistsError(store.mismatch_message(identity, stored))
            store.meta["identity"] = {**store.meta.get("identity", {}), **identity}
            store.prune()
            # What the run started with stays as it was; each resume appends the environment it ran in.
            env = {k: meta[k] for k in RESUME_KEYS if k in meta}
            store.meta["resumes"] = [*store.meta.get("resumes", []), {"at": now(), **env}]
        else:
            if store.root.exists() and any(store.root.iterdir()):
                raise RunExistsError(f"{store.root} exists, is not empty and holds no run.json; choose another --out")
            store.pred_dir.mkdir(parents=True, exist_ok=True)
            store.meta = {**meta, "identity": dict(identity), "cells": {}, "started_at": now()}
        store.pred_dir.mkdir(parents=True, exist_ok=True)
        store.save_meta()
        return store

    @classmethod
    def read(cls, root: Path) -> RunStore:
        store = cls(root)
        if not store.run_path.exists():
            raise FileNotFoundError(f"{store.root} is not a mibench run directory (no run.json)")
        store.meta = json.loads(store.run_path.read_text())
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
                   **info: Any) -> None:
        """Persist a finished cell: predictions, then records, then the done mark (see module docstring)."""
        buf = _npz_bytes(predictions)
        atomic_write(self.pred_dir / f"{cell}.npz", buf)
        lines = "".join(json.dumps({**r, "cell": cell}, allow_nan=True) + "\n" for r in records)
        with open(self.records_path, "a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())
        self.mark(cell, "done", **info)

    def save_meta(self) -> None:
        atomic_write(self.run_path, json.dumps(self.meta, indent=2, default=str).encode())

    def prune(self) -> None:
        """Drop records of cells not marked done, and a partial trailing line from an interrupted append."""
        if not self.records_path.exists():
            return
        rows, dropped = self._done_rows()
        if dropped:
            lines = "".join(json.dumps(r, allow_nan=True) + "\n" for r in rows)
            atomic_write(self.records_path, lines.encode())

    # -- reading -------------------------------------------------------------------------------------
    def records(self) -> pd.DataFrame:
        if not self.records_path.exists():
            return pd.DataFrame(columns=[*RECORD_COLUMNS, "cell"])
        return pd.DataFrame(self._done_rows()[0], columns=[*RECORD_COLUMNS, "cell"])

    def _done_rows(self) -> tuple[list[dict[str, Any]], int]:
        """Complete records of cells marked done, and how many lines were not (a run killed mid-cell leaves
        some until it is resumed; readers must not see them)."""
        done = {c for c, e in self.meta.get("cells", {}).items() if e.get("status") == "done"}
        rows, dropped = [], 0
        for line in self.records_path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                row = json.loads(line) if line.endswith("\n") else None
            except json.JSONDecodeError:
                row = None
            if row is not None and row.get("cell") in done:
                rows.append(row)
            else:
                dropped += 1
        return rows, dropped

    def predictions(self, cell: str) -> dict[str, np.ndarray]:
        with np.load(self.pred_dir / f"{cell}.npz", allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()
