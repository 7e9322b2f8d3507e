"""Read one or several run directories into one tidy record table, with their metadata and reportability.

The only module of ``reports/`` that opens files (with :mod:`reports.report` writing them). Nothing here
trains, predicts or recomputes a metric.

Merging rules (``mibench report RUN_A RUN_B``)
----------------------------------------------
* A dataset name must mean the same data in every run (same spec, provenance and split sizes); a
  ``tiny`` synth-mosi and a ``small`` one are different test sets and are never mixed.
* A protocol must have one definition (version and hash) per dataset across all runs, so that every
  column of a table was measured the same way.
* The same (dataset, method, seed, protocol, condition, metric) in two runs is an error if the protocol
  hashes differ. With identical hashes it is the same measurement twice: the run given first wins and the
  report says how many records of which run were ignored.

Reportability: a run is partial when ``run.json`` has no ``reportable`` mark (the run has not finished)
or the mark lists reasons (see :mod:`harness.runner`). Partial runs are refused unless ``allow_partial``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.store import RunStore

KEY = ["dataset", "method", "seed", "protocol", "condition", "metric"]


@dataclass(frozen=True)
class RunInfo:
    """One run directory: its ``run.json`` and why it is not reportable (empty when it is)."""

    path: Path
    meta: dict[str, Any]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Results:
    """Merged records (``harness.store.RECORD_COLUMNS`` + ``cell`` + ``run``, the index into ``runs``)."""

    records: pd.DataFrame
    runs: tuple[RunInfo, ...]
    notes: tuple[str, ...] = ()
    tasks: dict[str, str] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return any(run.reasons for run in self.runs)

    def predictions(self, dataset: str, method: str, seed: int) -> dict[str, np.ndarray]:
        """The stored per-sample predictions of one cell (from the run its kept records came from)."""
        rows = self.records[(self.records.dataset == dataset) & (self.records.method == method)
                            & (self.records.seed == seed)]
        if rows.empty:
            raise ValueError(f"no records for {dataset}/{method}/seed {seed}")
        run = self.runs[int(rows["run"].iloc[0])]
        return RunStore(run.path).predictions(str(rows["cell"].iloc[0]))


def partial_reasons(meta: dict[str, Any]) -> list[str]:
    """Why a run (its ``run.json`` content) may not be reported; empty when it may."""
    mark = meta.get("reportable")
    if mark is not None:
        return list(mark.get("reasons", []))
    reasons = ["run.json has no reportability mark: the run has not finished (or predates the mark)"]
    unfinished = sorted(c for c, e in meta.get("cells", {}).items() if e.get("status") != "done")
    if unfinished:
        reasons.append(f"{len(unfinished)} cell(s) not done: {', '.join(unfinished[:5])}")
    return reasons


def read_run(path: Path, allow_partial: bool) -> tuple[RunInfo, pd.DataFrame]:
    """One run's info and records; ``ValueError`` when it holds none, or is partial and not allowed."""
    store = RunStore.read(Path(path))
    records = store.records()
    if records.empty:
        statuses = pd.Series([e.get("status") for e in store.meta.get("cells", {}).values()], dtype=object)
        counts = ", ".join(f"{n} {s}" for s, n in statuses.value_counts().items()) or "no cells"
        raise ValueError(f"{path} holds no records yet ({counts}); nothing to report")
    reasons = partial_reasons(store.meta)
    if reasons and not allow_partial:
        raise ValueError(f"{path} is not reportable: {'; '.join(reasons)}. Pass --allow-partial to report it "
                         "anyway (every caption then says the run is partial)")
    return RunInfo(Path(path), store.meta, tuple(reasons)), records


def _dataset_identity(meta: dict[str, Any], dataset: str) -> dict[str, Any]:
    info = meta.get("datasets", {}).get(dataset, {})
    return {k: info.get(k) for k in ("spec", "provenance", "sizes")}


def _check_datasets(runs: Sequence[RunInfo], records: pd.DataFrame) -> dict[str, str]:
    """Task per dataset; ``ValueError`` when one dataset name means different data in two runs."""
    tasks: dict[str, str] = {}
    for dataset in records["dataset"].unique():
        used = sorted(records.loc[records.dataset == dataset, "run"].unique())
        first = _dataset_identity(runs[used[0]].meta, dataset)
        for other in used[1:]:
            ident = _dataset_identity(runs[other].meta, dataset)
            if ident != first:
                diff = [k for k in first if first[k] != ident[k]]
                raise ValueError(f"dataset {dataset!r} differs between {runs[used[0]].path} and {runs[other].path} "
                                 f"({', '.join(diff)} differ, e.g. another preset); these runs cannot be merged")
        spec = first.get("spec") or {}
        tasks[str(dataset)] = str(spec.get("task", "unknown"))
    return tasks


def _check_protocols(runs: Sequence[RunInfo], records: pd.DataFrame) -> None:
    """One (version, hash) per (dataset, protocol) across all runs."""
    defs = records.groupby(["dataset", "protocol"])[["protocol_version", "protocol_hash", "run"]]
    for (dataset, protocol), group in defs:
        versions = group.drop_duplicates(["protocol_version", "protocol_hash"])
        if len(versions) > 1:
            seen = "; ".join(f"v{r.protocol_version} ({r.protocol_hash}) in {runs[int(r.run)].path}"
                             for r in versions.itertuples())
            raise ValueError(f"protocol {protocol!r} on {dataset!r} has several definitions: {seen}; "
                             "report these runs separately")


def _drop_duplicates(runs: Sequence[RunInfo], records: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep the first run's record of a key measured in several runs; error if the protocol hashes differ."""
    dup = records.duplicated(KEY, keep=False)
    if not dup.any():
        return records, []
    clash = records[dup].groupby(KEY)["protocol_hash"].nunique()
    if (clash > 1).any():
        key = dict(zip(KEY, clash[clash > 1].index[0], strict=True))
        rows = records[dup & np.logical_and.reduce([records[k] == v for k, v in key.items()])]
        where = ", ".join(f"{runs[int(r.run)].path} ({r.protocol_hash})" for r in rows.itertuples())
        raise ValueError(f"{key} was measured with different protocol definitions in {where}")
    later = records[records.duplicated(KEY, keep="first")]
    notes = [f"{n} record(s) of {runs[int(run)].path} repeat records of an earlier run (same protocol hash) and "
             "were ignored; the run given first wins" for run, n in later.groupby("run").size().items()]
    return records.drop(later.index).reset_index(drop=True), notes


def load_results(paths: Sequence[Path | str], *, allow_partial: bool = False) -> Results:
    """Read and merge run directories (see the module docstring for the rules)."""
    if not paths:
        raise ValueError("no run directory given")
    if len({Path(p).resolve() for p in paths}) != len(paths):
        raise ValueError(f"a run directory is given twice: {[str(p) for p in paths]}")
    runs, frames = [], []
    for i, path in enumerate(paths):
        info, records = read_run(Path(path), allow_partial)
        runs.append(info)
        frames.append(records.assign(run=i))
    records = pd.concat(frames, ignore_index=True)
    records, notes = _drop_duplicates(runs, records)
    _check_protocols(runs, records)
    tasks = _check_datasets(runs, records)
    records["seed"] = records["seed"].astype(np.int64)
    records["value"] = records["value"].astype(float)
    records["severity"] = pd.to_numeric(records["severity"], errors="coerce")
    return Results(records, tuple(runs), tuple(notes), tasks)
