"""Integrity of a run directory: what ``records.jsonl`` holds, judged against ``run.json``'s cells.

:func:`scan_records` classifies every line (see :class:`Scan`); :meth:`harness.store.RunStore.prune` repairs
what it finds when a driver opens the store, and :func:`problems` lists it, read-only, for ``mibench status``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.store import RunStore

_CELL = re.compile(r'"cell":\s*"((?:[^"\\]|\\.)*)"')
_ROW_KEY = ("cell", "protocol", "condition", "metric")


@dataclass
class Scan:
    """What ``records.jsonl`` holds, judged against ``run.json``'s cells (see the module docstring).

    ``rows``: readable rows of done cells, the first of each (cell, protocol, condition, metric), in file order;
    ``unreadable``: 1-based numbers of lines that do not parse or are cut off; ``blamed``: done cells those
    lines name; ``undone``: rows of cells not done; ``duplicates``: repeated rows per cell; ``incomplete``: done
    cells with fewer rows than they wrote (found, written); ``no_predictions``: done cells without their file.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)
    blamed: set[str] = field(default_factory=set)
    undone: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)
    incomplete: dict[str, tuple[int, int]] = field(default_factory=dict)
    no_predictions: list[str] = field(default_factory=list)

    @property
    def redo(self) -> set[str]:
        """Done cells whose results are damaged: they go back to be trained again."""
        return self.blamed | set(self.incomplete) | set(self.no_predictions)

    @property
    def clean(self) -> bool:
        return not (self.unreadable or self.undone or self.duplicates or self.redo)


def scan_records(records_path: Path, cells: Mapping[str, Mapping[str, Any]], pred_dir: Path) -> Scan:
    """Classify every line of ``records_path`` against ``cells`` (run.json's) and the predictions files."""
    done = {c for c, e in cells.items() if e.get("status") == "done"}
    scan, seen, counts = Scan(), set(), dict.fromkeys(done, 0)
    text = records_path.read_bytes().decode("utf-8", "replace") if records_path.exists() else ""
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        row = _parse(line)
        if row is None:
            scan.unreadable.append(number)
            named = _CELL.search(line)
            if named and named.group(1) in done:
                scan.blamed.add(named.group(1))
            continue
        cell = row.get("cell")
        if cell not in done:
            scan.undone += 1
            continue
        key = tuple(str(row.get(k)) for k in _ROW_KEY)
        if key in seen:
            scan.duplicates[cell] = scan.duplicates.get(cell, 0) + 1
            continue
        seen.add(key)
        counts[cell] += 1
        scan.rows.append(row)
    for cell in sorted(done):
        written = cells[cell].get("n_records")
        if isinstance(written, int) and counts[cell] < written:
            scan.incomplete[cell] = (counts[cell], written)
        if not (pred_dir / f"{cell}.npz").is_file():
            scan.no_predictions.append(cell)
    return scan


def problems(store: RunStore) -> list[str]:
    """One line per problem of ``store``'s directory (see :meth:`harness.store.RunStore.integrity_problems`)."""
    from harness.store import temp_files

    scan = store.scan()
    out = [f"records.jsonl line {n} is unreadable (cut off or corrupt)" for n in scan.unreadable[:5]]
    if len(scan.unreadable) > 5:
        out.append(f"records.jsonl has {len(scan.unreadable) - 5} more unreadable line(s)")
    for cell in sorted(scan.redo):
        found, written = scan.incomplete.get(cell, (None, None))
        why = ("its predictions file is missing" if cell in scan.no_predictions else
               f"only {found} of its {written} records are readable" if cell in scan.incomplete else
               "a record of it is unreadable")
        out.append(f"cell {cell} is done but {why}: the next run trains it again")
    out += [f"cell {cell} has {n} duplicated record(s): the next run removes them"
            for cell, n in sorted(scan.duplicates.items())]
    if scan.undone:
        out.append(f"records.jsonl holds {scan.undone} record(s) of cells not done (an interrupted or running "
                   "cell); readers skip them, the next run removes them")
    out += [f"{p.relative_to(store.root)} is left by an interrupted write: the next run removes it"
            for p in temp_files(store.root)]
    report = store.root / "report"  # reports/staging.py builds it in .report.tmp-* and swaps it in
    out += [f"{p.name} is left by an interrupted report write: the next report write removes it"
            for p in sorted([*store.root.glob(".report.tmp-*"), *store.root.glob(".report.old-*")])]
    if "finished_at" in store.meta and not (report / "report.md").is_file():
        out.append("report/ is missing or incomplete: the next mibench run or mibench report writes it")
    return out


def _parse(line: str) -> dict[str, Any] | None:
    """A complete line's row, or None for a cut-off (no newline) or unreadable one."""
    if not line.endswith("\n"):
        return None
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None
