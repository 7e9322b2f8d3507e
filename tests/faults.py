"""Filesystem faults for the bad-input tests, made real where the system allows it.

``read_only(dir)``: a read-only bind mount of ``dir`` onto itself (denies root too) where ``mount`` works,
else ``os.open``/``os.mkdir``/renames/removals under ``dir`` patched to raise ``EROFS``.
``full_disk(dir, free)``: a small tmpfs mounted on ``dir`` and filled up to ``free`` bytes where ``mount``
works, else writes and fsyncs under ``dir`` patched to raise ``ENOSPC`` once the files there would exceed
``free`` more bytes. Both yield the method used, which the tests record (``record_property("fault", ...)``).
:data:`METHODS` lists what this system can do: both where mounts work (so the fallback is tested too), only
the patches elsewhere.
"""

from __future__ import annotations

import errno
import functools
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@functools.cache
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root in a container that allows it)."""
    probe = tempfile.mkdtemp(prefix="mibench-mount-probe-")
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True).returncode
        if ok == 0:
            subprocess.run(["umount", probe], check=True)
        return ok == 0
    except OSError:
        return False
    finally:
        os.rmdir(probe)


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _under(path: object, root: Path) -> bool:
    try:
        return Path(os.fsdecode(path)).resolve().is_relative_to(root.resolve())
    except (TypeError, ValueError, OSError):
        return False


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


METHODS = ("mount", "patch") if can_mount() else ("patch",)


@contextmanager
def read_only(root: Path, monkeypatch: pytest.MonkeyPatch, method: str) -> Iterator[str]:
    root.mkdir(parents=True, exist_ok=True)
    if method == "mount":
        subprocess.run(["mount", "--bind", str(root), str(root)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(root), str(root)], check=True)
            yield "read-only bind mount"
        finally:
            _umount(root)
        return

    def deny(name: str, real: Callable) -> Callable:
        def patched(path, *args, **kwargs):
            flags = args[0] if name == "open" and args else kwargs.get("flags", 0)
            writes = name != "open" or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC)
            if writes and _under(path, root):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
            return real(path, *args, **kwargs)
        return patched

    with monkeypatch.context() as m:
        for name in ("open", "mkdir", "rmdir", "unlink", "remove"):
            m.setattr(os, name, deny(name, getattr(os, name)))
        for name in ("rename", "replace"):
            real = getattr(os, name)
            m.setattr(os, name, lambda a, b, _r=real: (_ for _ in ()).throw(
                OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(b))) if _under(b, root) else _r(a, b))
        yield "monkeypatched os calls raising EROFS"


@contextmanager
def full_disk(root: Path, free: int, monkeypatch: pytest.MonkeyPatch,
              method: str) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yields (method, make_room): ``make_room()`` frees the space again."""
    root.mkdir(parents=True, exist_ok=True)
    if method == "mount":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)], check=True)
        try:
            filler = root / ".filler"
            st = os.statvfs(root)
            with open(filler, "wb") as fh:
                fh.write(b"\0" * max(st.f_bavail * st.f_frsize - free, 0))
            yield "tmpfs of 4 MiB, filled", lambda: filler.unlink()
        finally:
            _umount(root)
        return
    state = {"full": True, "base": _used(root)}

    def check(fd: int, extra: int) -> None:
        path = _fd_path(fd)
        if state["full"] and path and _under(path, root) and _used(root) + extra - state["base"] > free:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    real_write, real_fsync, real_pwrite = os.write, os.fsync, os.pwrite
    with monkeypatch.context() as m:
        m.setattr(os, "write", lambda fd, data: (check(fd, len(data)), real_write(fd, data))[1])
        m.setattr(os, "pwrite", lambda fd, data, off: (check(fd, len(data)), real_pwrite(fd, data, off))[1])
        m.setattr(os, "fsync", lambda fd: (check(fd, 0), real_fsync(fd))[1])
        yield "monkeypatched write/fsync raising ENOSPC", lambda: state.update(full=False)


def _used(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
