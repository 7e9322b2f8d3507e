"""Write a directory whole or not at all: build it beside its destination, then swap it in.

``with staged_dir(OUT) as tmp:`` yields an empty temp directory ``.OUT.tmp-*`` next to ``OUT``; when the block
ends without an error, ``tmp`` replaces ``OUT`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``: readers see
the old directory or the new one, never a mix), and the old one is deleted. Where the exchange is not available
(another OS, some network filesystems) ``OUT`` is renamed aside and ``tmp`` renamed in: a kill between those two
renames leaves ``OUT`` missing, never partial, and the next write builds it again.

Writers of one ``OUT`` take turns on ``.OUT.lock``; whoever holds it first removes what killed writers left
(``.OUT.tmp-*``, ``.OUT.old-*``), since no live writer can own them then. A destination that is not a directory
of ours (a file, or a directory holding other things than what ``replaceable`` accepts) is refused, never
deleted.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.lock import exclusive

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def leftovers(out: Path) -> list[Path]:
    """Temp and old directories that writers of ``out`` left behind when they were killed."""
    out = Path(out)
    return sorted(p for p in out.parent.glob(f".{out.name}.*-*") if p.name.startswith(
        (f".{out.name}.tmp-", f".{out.name}.old-")))


@contextmanager
def staged_dir(out: Path, replaceable: Callable[[Path], bool] = lambda p: True) -> Iterator[Path]:
    """Yield a temp directory that replaces ``out`` whole when the block succeeds (see the module docstring).

    ``replaceable(out)`` decides whether an existing ``out`` may be replaced; ``ValueError`` if not.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a directory; choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(out.parent)) from None
    with exclusive(out.parent / f".{out.name}.lock"):
        for stale in leftovers(out):
            shutil.rmtree(stale, ignore_errors=True)
        if out.is_dir() and not replaceable(out):
            raise ValueError(f"{out} is not empty and holds no report.md; choose another --out")
        try:
            tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(out.parent)) from None
        try:
            yield tmp
            swap_in(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # the new one on failure, the old one after an exchange


def swap_in(new: Path, out: Path) -> None:
    """Make ``new`` be ``out``; afterwards ``new`` holds the old ``out`` (or nothing), for the caller to delete."""
    if not out.exists():
        os.rename(new, out)
        return
    if _exchange(new, out):
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.rename(out, old / "dir")
    os.rename(new, out)
    os.rename(old / "dir", new)  # so the caller deletes it
    old.rmdir()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system or filesystem cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))
