"""Load pickled feature files without letting them run code.

A pickle is a small program: loading one calls whatever callables it names, so a crafted ``.pkl`` can run any
command. The feature releases mibench reads (MMSA, CMU-MultimodalSDK/MulT, DialogueRNN/MMGCN IEMOCAP) only
need numpy arrays, numpy dtypes and scalars, and builtin containers. :class:`RestrictedUnpickler` admits exactly
those names and refuses every other one *before* it is called, so nothing outside the list ever runs.

Python 2 pickles (the DialogueRNN IEMOCAP release) are read with ``encoding="latin1"``, which is what numpy
needs to rebuild arrays pickled by Python 2; numpy 1.x and 2.x module paths (``numpy.core`` vs
``numpy._core``) are both accepted and mapped to the installed numpy.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import shlex
from pathlib import Path
from typing import Any

import numpy as np

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


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` only returns the names in :data:`ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (``__builtin__.set``) as the default find_class would map them for old protocols
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = (_normalise(module), name)
        if key not in ALLOWED:
            raise UnsafePickleError(f"{module}.{name}")
        if key[0].startswith("core."):
            module = f"{_NUMPY_CORE}.{key[0][len('core.'):]}"
        return super().find_class(module, name)


def load_pickle(path: Path, trust: bool = False, name: str | None = None) -> Any:
    """Unpickle ``path`` through :class:`RestrictedUnpickler` (or plain ``pickle`` when ``trust``).

    Raises ``ValueError`` with a one-line message naming the file for unsafe, truncated or corrupt pickles;
    ``name`` (the dataset asked for, if known) goes into the suggested convert command.
    """
    try:
        with open(path, "rb") as fh:
            if trust:
                return pickle.load(fh, encoding="latin1")  # the user vouched for this file
            return RestrictedUnpickler(fh, encoding="latin1").load()
    except UnsafePickleError as exc:
        raise ValueError(
            f"{path}: refused to unpickle: it asks for {exc}, which is not a numpy array, dtype or builtin container; "
            f"loading a pickle runs the callables it names, so mibench only admits the classes feature files need. "
            f"{trust_hint(path, name)}"
        ) from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            UnicodeDecodeError, MemoryError, OverflowError) as exc:
        raise ValueError(
            f"{path}: truncated or corrupt pickle ({type(exc).__name__}: {exc}); download or copy the file again"
        ) from None
