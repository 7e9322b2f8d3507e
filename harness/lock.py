"""One driver per run directory: ``RUN_DIR/.mibench.lock``, held for as long as a driver runs.

The lock is an exclusive ``flock`` on that file, so the kernel releases it when the holder ends in any way
(even SIGKILL), and a second driver learns at once who holds it: the file names the holder (pid, host, start
time). Rules when a driver starts:

* the flock is held by someone else: refused (:class:`RunLockedError`) with the holder's pid, host and start;
* the flock is free but the file names a holder on *this* host whose process is gone (or whose pid now belongs
  to another process): a stale lock, taken over with a warning;
* the flock is free and the file names a holder on *another* host: refused, because whether that process
  still runs cannot be checked from here (see below); delete the file once it is known to have stopped.

Network filesystems: on NFSv4 (and NFSv3 with lockd) Linux implements ``flock`` with POSIX locks that the
server arbitrates across clients, so two hosts are refused as two processes are; when a client dies the server
frees its lock after the lease time (about 90 s). Filesystems without working cross-host locks (NFS mounted
``nolock``, some FUSE and SMB mounts) only keep drivers of one host apart; the holder file still stops a
second host while the first one runs, unless someone deletes the file.

Released on exit: the file is removed while the lock is still held, and a driver that acquires the lock checks
that the file it locked is still the one at the path, so removal never lets two drivers in.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.store import LOCK_NAME, now

log = logging.getLogger(__name__)


class RunLockedError(RuntimeError):
    """Another driver holds the run directory."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: enough to tell a live holder from a dead one on the same host."""

    pid: int
    host: str
    started_at: str
    boot_id: str | None = None
    proc_start: int | None = None
    command: str = ""

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started_at}"

    @classmethod
    def me(cls) -> Holder:
        pid = os.getpid()
        return cls(pid, platform.node(), now(), _boot_id(), _proc_start(pid), " ".join(sys.argv)[:300])

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            return None

    def gone(self) -> bool | None:
        """True if this holder's process has ended, False if it runs, None if that cannot be told from here."""
        if self.host != platform.node():
            return None
        if self.boot_id and self.boot_id != _boot_id():
            return True  # the host rebooted since
        start = _proc_start(self.pid)
        if start is None:
            return True
        return self.proc_start is not None and start != self.proc_start  # the pid was reused


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc), or None if no such (live) process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        try:  # no /proc (macOS): signal 0 only says whether the pid exists
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return -1
        return -1
    return None if fields[0] == "Z" else int(fields[19])


class RunLock:
    """``with RunLock(root):`` holds ``root`` for this process (creating it if needed; see the module docstring).

    A directory created here and left empty (the run failed before writing anything) is removed on release.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.fd: int | None = None
        self.created: list[Path] = []

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        self._make_root()
        try:
            for _ in range(10):  # retried only when the file was replaced between open and flock
                fd = self._open_locked()
                if fd is not None:
                    self.fd = fd
                    break
            else:
                raise RunLockedError(f"{self.root}: could not lock {self.path}: it keeps being replaced")
            self._claim()
        except RunLockedError:
            self.release(unlink=False)  # a refused lock's file names its holder: it stays as it is
            raise
        except BaseException:
            self.release()  # e.g. a full disk while writing our name: we hold the lock, so the file goes
            raise

    def _make_root(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"{self.root} is a file, not a run directory; choose another --out")
        missing = [p for p in [self.root, *self.root.parents] if not p.exists()]
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot create the run directory: {exc.strerror}", str(self.root)) from None
        self.created = missing

    def _open_locked(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write the run directory: {exc.strerror}", str(self.root)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Holder.parse(_read(fd))
            os.close(fd)
            who = holder.describe() if holder else "another process (which has not yet written its name)"
            raise RunLockedError(f"{self.root} is in use by another mibench driver: {who}. Wait for it to finish "
                                 f"or stop it; two drivers on one run directory would train every cell twice") from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            log.warning("%s: the filesystem does not support locks (%s); only the holder file guards this run",
                        self.root, exc.strerror)
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder removed it while we waited: lock the new one instead
            os.close(fd)
            return None
        return fd

    def _claim(self) -> None:
        assert self.fd is not None
        previous = Holder.parse(_read(self.fd))
        if previous is not None and previous.pid != os.getpid():
            gone = previous.gone()
            if gone is None:
                raise RunLockedError(
                    f"{self.root} is held by {previous.describe()}, another host, whose process cannot be checked "
                    f"from here; if that driver has stopped, delete {self.path} and run again")
            if not gone:
                raise RunLockedError(f"{self.root} is in use by another mibench driver: {previous.describe()}")
            log.warning("%s: taking over a stale lock of %s, which is no longer running (killed or crashed); "
                        "its unfinished cells are redone", self.root, previous.describe())
        data = json.dumps(asdict(Holder.me())).encode()
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
            os.fsync(self.fd)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write the lock file: {exc.strerror}", str(self.path)) from None

    def release(self, unlink: bool = True) -> None:
        if self.fd is not None:
            try:
                if unlink:
                    self.path.unlink(missing_ok=True)  # while still holding it: see the module docstring
            except OSError as exc:
                log.warning("%s: could not remove the lock file (%s)", self.path, exc.strerror)
            os.close(self.fd)
            self.fd = None
        for folder in self.created:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: the run wrote something there
        self.created = []


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 1 << 16, 0).decode("utf-8", "replace")
    except OSError:
        return ""


def holder_of(root: Path) -> dict[str, Any] | None:
    """The holder named in ``root``'s lock file (for ``mibench status``), with ``live``: True, False or None."""
    try:
        holder = Holder.parse((Path(root) / LOCK_NAME).read_text())
    except OSError:
        return None
    if holder is None:
        return None
    gone = holder.gone()
    return {**asdict(holder), "live": None if gone is None else not gone}


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold ``path`` (a lock file, created if needed) exclusively, waiting for an earlier holder; removed on exit
    while still held, with the same replaced-file check as :class:`RunLock`. For short critical sections
    (writing a report) where the second writer should wait, not be refused."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        Path(path).unlink(missing_ok=True)
        os.close(fd)
