"""Import everything that registers itself: built-in metrics, datasets, methods and protocols, then plugins
advertised through the ``mibench.*`` entry-point groups. Idempotent."""

from __future__ import annotations

_loaded = False


def load() -> None:
    global _loaded
    if _loaded:
        return
    import baselines  # noqa: F401
    import corruptions  # noqa: F401
    import harness.datasets  # noqa: F401
    import harness.metrics  # noqa: F401
    from harness.registry import load_plugins

    _loaded = True
    load_plugins()
