"""What a researcher sees while a run goes on: the :class:`~harness.work.Progress` displays and the ETA.

* :class:`RichProgress` (a terminal): one line with done/total, elapsed time, ETA and a bar, then one line per
  cell that is actually executing with its current epoch; every line is cut to the terminal's width (80
  columns included), count, elapsed and ETA first so they are never the part cut.
* :class:`LogProgress` (output to a file or a pipe, e.g. a cluster job's log): through :mod:`logging`, the run
  directory when the run starts, one line per finished cell, and a heartbeat every minute naming the cells
  running.

Both print the run directory when the run starts, so ``mibench status RUN`` can follow it from another shell.

ETA (:func:`eta_seconds`, also used by ``mibench status``): each remaining cell is expected to take as long as
the mean of the finished cells of its method; for a method none of whose cells has finished, as long as its
running cells project (time so far / share of the epoch budget done: an upper bound, since early stopping may
end a cell sooner), else as the mean over all finished cells. A running cell is expected to need that minus
what it has already run; the total is divided by the number of cells that run at a time. The ETA is unknown
(``?``) until a cell has finished or reported an epoch, and while a cell has run longer than the other methods'
cells that its estimate comes from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # the display needs no torch: the CLI starts fast
    from harness.plan import Cell

log = logging.getLogger(__name__)
HEARTBEAT_S = 60.0


def eta_seconds(done: Sequence[tuple[str, float]], running: Sequence[tuple[str, float, float | None]],
                queued: Sequence[str], slots: int) -> float | None:
    """Seconds until the run ends (module docstring). ``done``: (method, seconds) of finished cells; ``running``:
    (method, seconds run so far, share of its epoch budget done or None); ``queued``: the method of every cell
    not started; ``slots``: cells at a time. None while nothing allows an estimate."""
    finished: dict[str, list[float]] = {}
    for method, seconds in done:
        finished.setdefault(method, []).append(seconds)
    projected: dict[str, list[float]] = {}
    for method, ran, share in running:
        if share:
            projected.setdefault(method, []).append(ran / share)
    known = [s for _, s in done] or [p for ps in projected.values() for p in ps]
    if not known:
        return None
    overall = sum(known) / len(known)

    def expected(method: str) -> float:
        own = finished.get(method) or projected.get(method)
        return sum(own) / len(own) if own else overall

    guessed = [ran for m, ran, _ in running if not (finished.get(m) or projected.get(m))]
    if any(ran > overall for ran in guessed):
        return None  # a cell has outrun the only estimate its method has (other methods' cells): no estimate
    work = sum(expected(m) for m in queued) + sum(max(expected(m) - ran, 0.0) for m, ran, _ in running)
    return work / max(1, slots)


def clock(seconds: float | None) -> str:
    """``h:mm:ss`` (``?`` when unknown)."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass
class Running:
    cell: Cell
    since: float
    epoch: int = 0
    epochs: int = 0


@dataclass
class Tracker:
    """The state both displays draw from: what has finished (and in how long), what is executing, what waits."""

    total: int = 0
    before: int = 0  # cells done in an earlier session of this run (resumed)
    out: Path | None = None
    todo: dict[str, Cell] = field(default_factory=dict)  # cells of this session not started yet
    started_at: float = field(default_factory=time.monotonic)
    finished: list[tuple[Cell, str, float]] = field(default_factory=list)
    running: dict[str, Running] = field(default_factory=dict)
    slots: int = 1  # the most cells seen running at once

    @property
    def done(self) -> int:
        return self.before + len(self.finished)

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def eta(self) -> float | None:
        now = time.monotonic()
        return eta_seconds([(c.method, s) for c, _, s in self.finished],
                           [(r.cell.method, now - r.since, r.epoch / r.epochs if r.epochs else None)
                            for r in self.running.values()], [c.method for c in self.todo.values()], self.slots)

    def start(self, total: int, done: int, out: Path | None, todo: Sequence[Cell] = ()) -> None:
        self.total, self.before, self.out, self.started_at = total, done, out, time.monotonic()
        self.todo = {c.id: c for c in todo}

    def started(self, cell: Cell) -> None:
        self.todo.pop(cell.id, None)
        self.running[cell.id] = Running(cell, time.monotonic())
        self.slots = max(self.slots, len(self.running))

    def epoch(self, cell: Cell, epoch: int, total: int) -> None:
        if cell.id not in self.running:
            self.started(cell)
        run = self.running[cell.id]
        run.epoch, run.epochs = epoch, total

    def finish(self, cell: Cell, status: str, seconds: float) -> None:
        self.todo.pop(cell.id, None)
        self.running.pop(cell.id, None)
        self.finished.append((cell, status, seconds))

    def headline(self) -> str:
        failed = sum(1 for _, status, _ in self.finished if status != "done")
        extra = f", {failed} failed" if failed else ""
        return f"{self.done}/{self.total} cells{extra} · {clock(self.elapsed())} elapsed · ETA {clock(self.eta())}"

    def lines(self) -> list[str]:
        """One line per executing cell, oldest first: its label and epoch."""
        out = []
        for run in sorted(self.running.values(), key=lambda r: r.since):
            where = f"epoch {run.epoch}/{run.epochs}" if run.epochs else "starting"
            out.append(f"{run.cell.label} · {where}")
        return out


class _Tracked:
    """What both displays share: a :class:`Tracker` that every event updates."""

    state: Tracker

    def started(self, cell: Cell) -> None:
        self.state.started(cell)

    def epoch(self, cell: Cell, epoch: int, total: int) -> None:
        self.state.epoch(cell, epoch, total)

    def finished(self, cell: Cell, status: str, seconds: float) -> None:
        self.state.finish(cell, status, seconds)


class RichProgress(_Tracked):
    """The terminal display (module docstring). ``console`` is where it draws (stderr, by the CLI)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.state = Tracker()
        self.live: Live | None = None

    def _render(self) -> Group:
        width = self.console.width
        head = Text(self.state.headline(), no_wrap=True, overflow="ellipsis")
        bar_width = max(0, width - len(head.plain) - 2)
        top = Table.grid(padding=(0, 1))
        if bar_width >= 10:
            top.add_row(head, ProgressBar(total=max(1, self.state.total), completed=self.state.done,
                                          width=min(30, bar_width)))
        else:
            top.add_row(head)
        rows = [Text(f"  {line}", no_wrap=True, overflow="ellipsis") for line in self.state.lines()]
        return Group(top, *rows)

    def start(self, total: int, done: int, out: Path, todo: Sequence[Cell] = ()) -> None:
        self.state.start(total, done, out, todo)
        self.console.print(f"Run directory: {out}", highlight=False, soft_wrap=True)
        self.live = Live(get_renderable=self._render, console=self.console, refresh_per_second=2, transient=True)
        self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            self.console.print(Text(self.state.headline().split(" · ETA")[0], no_wrap=True, overflow="ellipsis"))


class LogProgress(_Tracked):
    """The display for output that is not a terminal (module docstring): log lines, and a heartbeat thread."""

    def __init__(self, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.state = Tracker()
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, total: int, done: int, out: Path, todo: Sequence[Cell] = ()) -> None:
        self.state.start(total, done, out, todo)
        log.info("run directory: %s (%d cells, %d done earlier)", out, total, done)
        self._thread = threading.Thread(target=self._beat, name="mibench-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            running = "; ".join(self.state.lines()) or "none"
            log.info("%s · running: %s", self.state.headline(), running)

    def finished(self, cell: Cell, status: str, seconds: float) -> None:
        super().finished(cell, status, seconds)
        log.info("%s %s in %.1f s · %s", cell.label, status, seconds, self.state.headline())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
