"""Runs on disk, as ``mibench status`` and ``mibench runs`` show them: pure functions of ``run.json``.

``run.json`` cells carry ``status`` (queued -> running -> done/failed), ``queued_at``, ``started_at``,
``updated_at`` (UTC ISO times), ``train_time_s`` and ``eval_time_s``; a run that has ended carries
``reportable`` (absent while it runs or after it was killed, see :mod:`harness.runner`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.plan import Cell
from harness.progress import clock, eta_seconds
from harness.store import RunStore

STATUSES = ("done", "running", "queued", "failed", "not started")


def parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def short_time(text: Any, year: bool = True) -> str:
    """``2026-12-02 20:01`` (UTC; ``12-02 20:01`` without the year) from an ISO time, ``–`` when absent."""
    when = parse_time(text)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M" if year else "%m-%d %H:%M") if when else "–"


def planned(meta: dict[str, Any]) -> list[tuple[str, str, int]]:
    """Every (dataset, method, seed) of the run's plan, from its resolved config."""
    methods = list(meta.get("method_configs") or meta.get("config", {}).get("methods", []))
    datasets = list(meta.get("datasets") or [])
    seeds = list(meta.get("config", {}).get("seeds", []))
    return [(d, m, s) for d in datasets for m in methods for s in seeds]


def cell_table(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cell in run.json order, with its timing (seconds; None where not recorded)."""
    rows = []
    for cell, entry in meta.get("cells", {}).items():
        train, evaluate = entry.get("train_time_s"), entry.get("eval_time_s")
        total = (train or 0.0) + (evaluate or 0.0) if train is not None or evaluate is not None else None
        rows.append({"cell": cell, "status": entry.get("status", "?"), "queued_at": entry.get("queued_at"),
                     "started_at": entry.get("started_at"), "updated_at": entry.get("updated_at"),
                     "train_s": train, "eval_s": evaluate, "total_s": total, "detail": entry.get("error", "")})
    return rows


def counts(meta: dict[str, Any]) -> Counter[str]:
    """Cells per status; planned cells run.json does not list yet count as ``not started``."""
    out = Counter(entry.get("status", "?") for entry in meta.get("cells", {}).values())
    missing = len(planned(meta)) - sum(out.values())
    if missing > 0:
        out["not started"] += missing
    return out


def finished(meta: dict[str, Any]) -> bool:
    return "reportable" in meta


def state(meta: dict[str, Any]) -> str:
    """``finished``, ``partial`` (finished, not reportable) or ``unfinished`` (running, or stopped before the
    end: run.json alone cannot tell those two)."""
    mark = meta.get("reportable")
    if mark is None:
        return "unfinished"
    return "finished" if mark.get("ok") else "partial"


def _ids(meta: dict[str, Any]) -> dict[str, str]:
    """Cell id -> method, for every planned cell."""
    return {Cell(d, m, s).id: m for d, m, s in planned(meta)}


def _method(ids: dict[str, str], cell: str) -> str:
    parts = cell.split("__")
    return ids.get(cell) or (parts[1] if len(parts) == 3 else cell)


def eta(meta: dict[str, Any], now: datetime | None = None) -> float | None:
    """Seconds until the run ends if it is still going (:func:`harness.progress.eta_seconds` over the stored
    timings); None for a finished run or while no timing allows an estimate."""
    if finished(meta):
        return None
    now = now or datetime.now(timezone.utc)
    cells, ids = meta.get("cells", {}), _ids(meta)
    done = [(_method(ids, c), float(e.get("train_time_s") or 0) + float(e.get("eval_time_s") or 0))
            for c, e in cells.items() if e.get("status") == "done" and e.get("train_time_s") is not None]
    running = []
    for cell, entry in cells.items():
        since = parse_time(entry.get("started_at"))
        if entry.get("status") == "running" and since is not None:
            running.append((_method(ids, cell), max(0.0, (now - since).total_seconds()), None))
    queued = [_method(ids, c) for c, e in cells.items() if e.get("status") == "queued"]
    queued += [m for c, m in ids.items() if c not in cells]
    return eta_seconds(done, running, queued, max(1, len(running)))


def status_lines(meta: dict[str, Any], root: Path, now: datetime | None = None) -> list[str]:
    """The head of ``mibench status``: the run, its state and dates, the counts per status, and the ETA."""
    c = counts(meta)
    total = max(len(planned(meta)), sum(c.values()))
    shown = "".join(f" · {c[s]} {s}" for s in STATUSES if s != "done" and c.get(s))
    last = max((e.get("updated_at") or "" for e in meta.get("cells", {}).values()), default="")
    what = {"unfinished": "unfinished: running, or stopped before the end", "partial": "finished, not reportable"}
    dates = f"started {short_time(meta.get('started_at'))}, last update {short_time(last or meta.get('started_at'))}"
    if finished(meta):
        dates += f", finished {short_time(meta.get('finished_at'))}"
    lines = [f"Run: {root} ({what.get(state(meta), state(meta))}; {dates})",
             f"Cells: {c.get('done', 0)}/{total} done{shown}"]
    if not finished(meta) and c.get("done", 0) < total:
        lines.append(f"ETA: {clock(eta(meta, now))} if the run is still going (from the finished cells' timings)")
    for reason in (meta.get("reportable") or {}).get("reasons", []):
        lines.append(f"Not reportable: {reason}")
    return lines


@dataclass(frozen=True)
class RunSummary:
    """One line of ``mibench runs``."""

    path: Path
    state: str
    done: int
    total: int
    config: str
    started: str
    updated: str


def summarize(root: Path) -> RunSummary:
    meta = RunStore.read(root).meta
    cfg = meta.get("config", {})
    methods, datasets = list(meta.get("method_configs") or cfg.get("methods", [])), list(meta.get("datasets") or [])
    shown = ", ".join(methods[:3]) + (f" +{len(methods) - 3}" if len(methods) > 3 else "")
    config = (f"{shown} · {', '.join(datasets)} · {len(cfg.get('seeds', []))} seeds · {cfg.get('preset', '?')} · "
              f"{','.join(cfg.get('protocols', []))}")
    c = counts(meta)
    last = max((e.get("updated_at") or "" for e in meta.get("cells", {}).values()), default="")
    return RunSummary(root, state(meta), c.get("done", 0), max(len(planned(meta)), sum(c.values())), config,
                      short_time(meta.get("started_at")), short_time(meta.get("finished_at") or last))


def list_runs(home: Path) -> tuple[list[RunSummary], list[str]]:
    """Every run directory directly under ``home`` (newest first), and why other entries were skipped."""
    runs, skipped = [], []
    for path in sorted(p for p in home.iterdir() if p.is_dir()) if home.is_dir() else []:
        try:
            runs.append(summarize(path))
        except FileNotFoundError:
            continue  # not a run directory
        except ValueError as exc:  # an unreadable run.json (json.JSONDecodeError is a ValueError)
            skipped.append(f"{path}: {exc}")
    return sorted(runs, key=lambda r: r.started, reverse=True), skipped
