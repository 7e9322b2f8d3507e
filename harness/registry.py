"""One generic name -> object registry, instantiated once per kind (methods, datasets, protocols, metrics).

Registration is by decorator. A duplicate name is a programming error (``ValueError``); an unknown name is a
user error (``UnknownNameError``) whose message suggests close matches and lists every known name, so a typo
on the command line is answered before any training starts.

Third-party packages add entries through the entry-point group ``mibench.<kind>`` (for example
``mibench.methods``): each entry point names a module, importing it runs its ``@REGISTRY.register`` decorators.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class UnknownNameError(KeyError):
    """An unknown registry name; ``str()`` gives the full user-facing message (KeyError would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Named objects of one kind.

    ``hidden`` entries (ablation variants, for example) are left out of ``all`` but reachable by name or glob.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._hidden: set[str] = set()
        self._origins: dict[str, str | None] = {}

    def register(self, name: str, *, hidden: bool = False) -> Callable[[T], T]:
        """Decorator: ``@METHODS.register("vanilla_fusion")``."""

        def add(obj: T) -> T:
            self.add(name, obj, hidden=hidden)
            return obj

        return add

    def add(self, name: str, obj: T, *, hidden: bool = False) -> None:
        if not name or name != name.strip() or "," in name or "=" in name:
            raise ValueError(f"Invalid {self.kind} name {name!r}: no commas, '=' or surrounding spaces")
        if name in self._items:
            raise ValueError(f"Duplicate {self.kind} name {name!r}: already registered as {self._items[name]!r}")
        self._items[name] = obj
        self._origins[name] = _registering_module()
        if hidden:
            self._hidden.add(name)

    def origin(self, name: str) -> str | None:
        """The module whose import registered ``name`` (importing it in a fresh process registers it again), or
        None when the registration cannot be repeated that way (made inside a function, or by ``__main__``)."""
        return self._origins.get(name)

    def remove(self, name: str) -> None:
        """Unregister (tests that register throw-away entries clean up with this)."""
        self._items.pop(name, None)
        self._hidden.discard(name)
        self._origins.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        known = sorted(self._items)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(known) or '(none)'}."

    def resolve(self, patterns: Iterable[str]) -> list[str]:
        """Expand ``all`` and glob patterns (``modal_immune*``) into registered names, in first-seen order.

        A plain name or a glob that matches nothing raises ``UnknownNameError`` with suggestions.
        """
        out: list[str] = []
        for pat in patterns:
            if pat == "all":
                matches = [n for n in sorted(self._items) if n not in self._hidden]
            elif any(ch in pat for ch in "*?["):
                matches = sorted(n for n in self._items if fnmatch.fnmatchcase(n, pat))
            else:
                matches = [pat]
            if not matches:
                raise UnknownNameError(self.unknown_message(pat))
            for name in matches:
                self.get(name)
                if name not in out:
                    out.append(name)
        return out

    def names(self, *, include_hidden: bool = True) -> list[str]:
        return sorted(n for n in self._items if include_hidden or n not in self._hidden)

    def entries(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs in registration order."""
        return list(self._items.items())

    def is_hidden(self, name: str) -> bool:
        return name in self._hidden

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def _registering_module() -> str | None:
    """The module whose top-level code (directly, or through decorators and helpers it calls) is registering:
    the innermost module frame on the stack. None when that is ``__main__`` (a script, or a test runner calling
    a function): importing a module in a fresh process would not repeat the registration."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_name != "<module>":
        frame = frame.f_back
    if frame is None or frame.f_globals.get("__name__") in (None, "__main__", __name__):
        return None
    return frame.f_globals.get("__name__")


def load_plugins(kinds: Iterable[str] = ("methods", "datasets", "protocols", "corruptions", "metrics")) -> list[str]:
    """Import every module advertised under the ``mibench.<kind>`` entry-point groups; return their names."""
    loaded = []
    for kind in kinds:
        for ep in entry_points(group=f"mibench.{kind}"):
            try:
                ep.load()
            except Exception as exc:  # a broken third-party package must not look like a mibench crash
                dist = getattr(ep.dist, "name", "an installed package")
                raise ImportError(f"The plugin {ep.value!r} (entry point {ep.name!r} in group mibench.{kind}, from "
                                  f"{dist}) failed to import: {type(exc).__name__}: {exc}. Fix or uninstall "
                                  f"that package.") from exc
            loaded.append(ep.value)
    return loaded


def import_plugin(module: str) -> None:
    """Import a user module (``--plugin my_module``) so that its registrations take effect."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"Could not import plugin module {module!r}: {exc}") from exc
    log.info("imported plugin module %s", module)


# The registries. Entries: method classes (baselines/), dataset loaders (harness/datasets/), protocol instances
# and corruption specs (corruptions/), and metric specs (harness/metrics.py).
METHODS: Registry = Registry("method")
DATASETS: Registry = Registry("dataset")
PROTOCOLS: Registry = Registry("protocol")
CORRUPTIONS: Registry = Registry("corruption")
METRICS: Registry = Registry("metric")
