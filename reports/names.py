"""What readers see: the labels of methods, metrics, protocols, conditions and severity axes in figures and paper
tables. Each comes from its registry entry (``MethodCard.label``, ``MetricSpec.label``, ``Protocol.label``,
``Protocol.condition_label``, ``Protocol.severity_label``) and falls back to the registry name, so a method or
protocol from a plugin that is not imported when reporting still gets a name. Markdown and CSV tables keep the
registry names (what ``--methods`` and the records use)."""

from __future__ import annotations

from collections.abc import Sequence

from harness import builtins
from harness.registry import METHODS, METRICS, PROTOCOLS

SEVERITY = "severity"


def method_label(name: str) -> str:
    builtins.load()  # the built-in entries label themselves (idempotent)
    card = getattr(METHODS.get(name), "card", None) if name in METHODS else None
    return getattr(card, "label", "") or name


def method_labels(names: Sequence[str]) -> dict[str, str]:
    """A label per method, unique: methods whose labels collide (two cards naming themselves alike) keep their
    registry names, so no two lines or rows of one figure or table read the same."""
    labels = {n: method_label(n) for n in names}
    taken = list(labels.values())
    return {n: lab if taken.count(lab) == 1 else n for n, lab in labels.items()}


def metric_label(name: str) -> str:
    builtins.load()
    return (METRICS.get(name).label or name) if name in METRICS else name


def protocol_label(name: str) -> str:
    builtins.load()
    return (PROTOCOLS.get(name).label or name) if name in PROTOCOLS else name


def condition_label(protocol: str, name: str) -> str:
    builtins.load()
    return PROTOCOLS.get(protocol).condition_label(name) if protocol in PROTOCOLS else name


def severity_label(protocol: str, curve: str) -> str:
    builtins.load()
    return PROTOCOLS.get(protocol).severity_label(curve) if protocol in PROTOCOLS else SEVERITY
