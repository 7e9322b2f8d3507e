"""Load pickled feature files without letting them run code.

A pickle is a small program: loading one calls whatever callables it names, so a crafted ``.pkl`` can run any
command. The feature releases mibench reads (MMSA, CMU-MultimodalSDK/MulT, DialogueRNN/MMGCN IEMOCAP) only
need numpy arrays, numpy dtypes and scalars, and builtin containers. :class:`RestrictedUnpickler` admits exactly
those names and refuses every other one *before* it is called, so nothing outside the list ever runs.

What a pickle may make the loader allocate is bounded (:mod:`harness.datasets.limits`): every admitted callable
that can build something large (``bytearray(n)``, ``list(range(n))``, ``str`` of a nested list, a numpy array
of a declared shape) is charged against the file's budget before it runs, and the unpickled object is then
measured as a tree (shared parts counted every time they occur, as ``np.asarray`` or ``str`` would expand them;
a reference cycle is refused). Either overrun is a one-line ``ValueError`` naming the file, within seconds.

Python 2 pickles (the DialogueRNN IEMOCAP release) are read with ``encoding="latin1"``, which is what numpy
needs to rebuild arrays pickled by Python 2; numpy 1.x and 2.x module paths (``numpy.core`` vs
``numpy._core``) are both accepted and mapped to the installed numpy.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import os
import pickle
import shlex
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.datasets.limits import PICKLE_RATIO, LoadLimitError, budget, refusal

_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"

# (module, name) pairs a feature file may reference; module paths are as written by numpy 1.x or 2.x.
ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("core.multiarray", "_reconstruct"),  # how ndarray.__reduce__ rebuilds an array
    ("core.multiarray", "scalar"),  # numpy scalars (np.float32(1.0), np.int64(3))
    ("core.numeric", "_frombuffer"),  # pickle protocol 5 arrays
    ("_codecs", "encode"),  # protocol-2 encoding of bytes
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    *(("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "complex", "int", "float",
                                "str", "bytes", "bool", "slice", "range")),
})

CONVERTIBLE = ("mosi", "mosei", "iemocap")  # the datasets ``mibench data convert`` accepts as NAME=FILE


def trust_hint(path: Path, name: str | None) -> str:
    """Advice with a ``mibench data convert`` command that runs as written (the dataset named, the path quoted).

    The command needs the dataset: MOSI and MOSEI pickles look alike, and the refused file cannot be read to tell.
    """
    src = shlex.quote(str(path))
    dst = shlex.quote(f"{name}.npz") if name in CONVERTIBLE else "OUT.npz"
    target = f"{name}={src}" if name in CONVERTIBLE else f"NAME={src}"
    which = "" if name in CONVERTIBLE else " (NAME: mosi, mosei or iemocap, whichever the file holds)"
    return (f"If you trust the file, convert it once in a trusted environment with "
            f"'mibench data convert {target} {dst} --trust-pickle'{which} and use the .npz.")


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a callable outside :data:`ALLOWED`; nothing it names has been called."""


def _normalise(module: str) -> str:
    """``numpy.core.multiarray`` / ``numpy._core.multiarray`` -> ``core.multiarray`` (numpy internals only)."""
    for prefix in ("numpy._core.", "numpy.core."):
        if module.startswith(prefix):
            return "core." + module[len(prefix):]
    return module


# Admitted types whose construction cannot allocate more than the file holds; NEWOBJ needs real types, and
# ``complex`` is pickled that way. Every other admitted name is returned as a :class:`Guarded` callable.
_PLAIN = frozenset({("builtins", n) for n in ("int", "float", "complex", "bool", "slice", "range")}
                   | {("numpy", "dtype")})
_SLOT = 8  # bytes charged per reference a container holds


class Budget:
    """Bytes the unpickler may still allocate for one file; :meth:`charge` raises the one-line refusal."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit, self.used = path, limit, 0

    def charge(self, n: int, what: str) -> None:
        self.used += n
        if self.used > self.limit:
            raise refusal(self.path, self.used, self.limit, what)


def _length(x: Any) -> int:
    """Elements a constructor makes from ``x``: ``len`` of a container, string or range (0 for scalars)."""
    try:
        return len(x) if not isinstance(x, (int, float, complex)) else 0
    except (TypeError, OverflowError):  # a range longer than sys.maxsize
        return 1 << 62


class Guarded:
    """An admitted callable that charges what it would build to the file's :class:`Budget` before it runs."""

    def __init__(self, fn: Callable[..., Any], name: str, cost: Callable[..., int], budget: Budget) -> None:
        self.fn, self.name, self.cost, self.budget = fn, name, cost, budget

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args = tuple(a.fn if isinstance(a, Guarded) else a for a in args)  # e.g. _reconstruct(ndarray, ...)
        self.budget.charge(self.cost(*args, **kwargs), f"{self.name}(...)")
        return self.fn(*args, **kwargs)


def _array_cost(shape: Any = (), dtype: Any = float, buffer: Any = None, *_: Any, **__: Any) -> int:
    if buffer is not None:
        return 0  # a view on bytes the file already holds
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        return 0  # numpy refuses it itself
    return math.prod(dims) * max(np.dtype(dtype).itemsize, 1)


def _reconstruct_cost(cls: Any, shape: Any, dtype: Any, *_: Any) -> int:
    return _array_cost(shape, dtype if isinstance(dtype, np.dtype) else np.uint8)


def _container_cost(*args: Any, **kwargs: Any) -> int:
    return (sum(_length(a) for a in args) + len(kwargs)) * _SLOT * 4


def _bytes_cost(source: Any = b"", *_: Any) -> int:
    return source if isinstance(source, int) and not isinstance(source, bool) else _length(source)


def _str_cost(obj: Any = "", *_: Any) -> int:
    if isinstance(obj, str):
        return len(obj)
    return 4 * expanded_size(obj, cycles_ok=True)  # str(nested list) writes every shared part out again


_COSTS: dict[tuple[str, str], Callable[..., int]] = {
    ("numpy", "ndarray"): _array_cost,
    ("core.multiarray", "_reconstruct"): _reconstruct_cost,
    ("core.multiarray", "scalar"): lambda dtype=None, data=b"", *a: _length(data),
    ("core.numeric", "_frombuffer"): lambda *a: 0,
    ("_codecs", "encode"): lambda obj="", encoding="utf-8", *a: _length(obj) * (
        1 if str(encoding).lower().replace("-", "") in ("latin1", "iso88591", "ascii") else 4),
    ("builtins", "bytearray"): _bytes_cost,
    ("builtins", "bytes"): _bytes_cost,
    ("builtins", "str"): _str_cost,
}


def expanded_size(obj: Any, cycles_ok: bool = False) -> int:
    """Bytes of ``obj`` as a tree: every occurrence of a shared part counted again (what ``np.asarray`` of
    a nested list or ``str`` would materialise). Iterative, linear in the distinct objects. A reference cycle
    raises ``ValueError`` unless ``cycles_ok`` (then a back reference counts one slot)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(obj, False)]
    while stack:
        item, done = stack.pop()
        key = id(item)
        children = _children(item)
        if done:
            on_path.discard(key)
            sizes[key] = _SLOT * len(children) + _own(item) + sum(sizes.get(id(c), _SLOT) for c in children)
            continue
        if key in sizes:
            continue
        if key in on_path:
            if not cycles_ok:
                raise ValueError("its objects refer to themselves (a reference cycle), which no feature file holds")
            continue
        on_path.add(key)
        stack.append((item, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(obj)]


def _children(x: Any) -> list[Any]:
    if isinstance(x, dict):
        return [*x.keys(), *x.values()]
    if isinstance(x, (list, tuple, set, frozenset)):
        return list(x)
    if isinstance(x, np.ndarray) and x.dtype.hasobject:
        return list(x.ravel())
    return []


def _own(x: Any) -> int:
    if isinstance(x, np.ndarray):
        return 0 if x.dtype.hasobject else int(x.nbytes)
    if isinstance(x, (str, bytes, bytearray)):
        return len(x)
    return _SLOT


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` only returns the names in :data:`ALLOWED`, each charged to ``budget``
    (unbounded when ``budget`` is None)."""

    def __init__(self, file: Any, *, budget: Budget | None = None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.budget = budget

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (``__builtin__.set``) as the default find_class would map them for old protocols
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = (_normalise(module), name)
        if key not in ALLOWED:
            raise UnsafePickleError(f"{module}.{name}")
        if key[0].startswith("core."):
            module = f"{_NUMPY_CORE}.{key[0][len('core.'):]}"
        found = super().find_class(module, name)
        if self.budget is None or key in _PLAIN:
            return found
        if found is defaultdict:
            return Guarded(_defaultdict, name, _container_cost, self.budget)
        return Guarded(found, name, _COSTS.get(key, _container_cost), self.budget)


def _defaultdict(factory: Any = None, *args: Any) -> defaultdict:
    return defaultdict(factory.fn if isinstance(factory, Guarded) else factory, *args)


class _Clamped(io.BufferedReader):
    """A file whose ``read(n)`` never asks for more than the bytes left: a length field of 2**60 in the pickle
    must not become a 2**60-byte buffer."""

    def __init__(self, raw: Any, size: int) -> None:
        super().__init__(raw)
        self.size = size

    def read(self, n: int | None = -1) -> bytes:
        left = max(self.size - self.tell(), 0)
        return super().read(left if n is None or n < 0 else min(n, left))


def load_pickle(path: Path, trust: bool = False, name: str | None = None, limit: int | None = None) -> Any:
    """Unpickle ``path`` through :class:`RestrictedUnpickler` (or plain ``pickle`` when ``trust``).

    Raises ``ValueError`` with a one-line message naming the file for unsafe, truncated, corrupt or too large
    pickles (``limit``: the user's ``--load-limit`` in bytes, see :mod:`harness.datasets.limits`); ``name`` (the
    dataset asked for, if known) goes into the suggested convert command.
    """
    try:
        with open(path, "rb", buffering=0) as raw:
            if trust:
                return pickle.load(io.BufferedReader(raw), encoding="latin1")  # the user vouched for this file
            size = os.fstat(raw.fileno()).st_size
            allowed = Budget(path, budget(size, PICKLE_RATIO, limit))
            obj = RestrictedUnpickler(_Clamped(raw, size), budget=allowed, encoding="latin1").load()
    except LoadLimitError:
        raise
    except RecursionError:
        raise ValueError(f"{path}: refused: the pickle nests its objects too deeply for a feature file") from None
    except UnsafePickleError as exc:
        raise ValueError(
            f"{path}: refused to unpickle: it asks for {exc}, which is not a numpy array, dtype or builtin container; "
            f"loading a pickle runs the callables it names, so mibench only admits the classes feature files need. "
            f"{trust_hint(path, name)}"
        ) from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            UnicodeDecodeError, MemoryError, OverflowError, OSError) as exc:
        raise ValueError(
            f"{path}: truncated or corrupt pickle ({type(exc).__name__}: {exc}); download or copy the file again"
        ) from None
    _check_expanded(obj, allowed)
    return obj


def _check_expanded(obj: Any, allowed: Budget) -> None:
    """The unpickled object as a reader would expand it must fit the file's budget too."""
    try:
        size = expanded_size(obj)
    except ValueError as exc:
        raise ValueError(f"{allowed.path}: refused: {exc}") from None
    if size > allowed.limit:
        raise refusal(allowed.path, size, allowed.limit, "expanding its shared parts (as np.asarray or str would)")
