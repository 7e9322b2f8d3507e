"""How much memory reading a data file may cost: a bound relative to the file's size, with an absolute cap.

A few hundred bytes of pickle or a small deflated ``.npz`` can describe gigabytes (a nested list whose parts are
shared, a call like ``bytearray(10**11)``, an array header declaring 3e9 x 4 x 5 floats, a zip bomb). The
readers check what a file would make them allocate against :func:`budget` *before* allocating it and fail with
one line naming the file, so a hostile or broken file costs seconds, never the machine.

The default budget of a file of ``size`` bytes is ``min(DEFAULT_CAP, FLOOR + ratio * size)``: pickles store
array data raw (``ratio`` :data:`PICKLE_RATIO`), deflated ``.npz`` members may legitimately expand (zero padding
compresses well; :data:`NPZ_RATIO`). ``--load-limit SIZE`` (``DataOptions.load_limit``) or the environment
variable ``MIBENCH_LOAD_LIMIT`` replaces the whole rule by ``SIZE``, for a trusted file that needs more.
"""

from __future__ import annotations

import os
import re

GiB, MiB = 1 << 30, 1 << 20
DEFAULT_CAP = 32 * GiB
FLOOR = 64 * MiB
PICKLE_RATIO = 4
NPZ_RATIO = 64
ENV = "MIBENCH_LOAD_LIMIT"
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": MiB, "g": GiB, "t": 1 << 40}


class LoadLimitError(ValueError):
    """Reading the file would allocate more than its budget; nothing of that size was allocated."""


def parse_size(text: str | int, where: str = "--load-limit") -> int:
    """``"64G"``, ``"512M"``, ``"1.5GiB"``, ``"1000000"`` -> bytes (binary units); ``ValueError`` otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.IGNORECASE)
        if not m:
            raise ValueError(f"{where} must be a size such as 64G, 512M or a number of bytes, got {text!r}")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise ValueError(f"{where} must be a positive size, got {text!r}")
    return value


def fmt(n: int | float) -> str:
    """Bytes as a short human size (``1.5 GiB``)."""
    for unit, size in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def explicit_limit(limit: int | None) -> int | None:
    """The user's limit: ``limit`` (from ``--load-limit``), else ``$MIBENCH_LOAD_LIMIT``, else None."""
    if limit is not None:
        return limit
    env = os.environ.get(ENV)
    return parse_size(env, f"${ENV}") if env else None


def budget(size: int, ratio: int, limit: int | None = None) -> int:
    """Bytes a reader may allocate for a file of ``size`` bytes (see the module docstring)."""
    chosen = explicit_limit(limit)
    return chosen if chosen is not None else min(DEFAULT_CAP, FLOOR + ratio * max(size, 0))


def refusal(path: object, need: int, allowed: int, what: str) -> LoadLimitError:
    """The one-line error: which file, what it asked for, the limit and how to raise it."""
    return LoadLimitError(f"{path}: refused: {what} would need {fmt(need)}, more than the {fmt(allowed)} allowed for "
                          f"this file; if you trust it, raise the limit with --load-limit SIZE (or {ENV}=SIZE)")
