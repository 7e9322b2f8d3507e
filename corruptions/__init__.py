"""Corruption functions grouped by family, and the versioned protocols built from them (registered on import).

Functions (registry ``CORRUPTIONS``): ``missing``, ``noise``, ``temporal``, and ``validation`` (held out).
Protocols (registry ``PROTOCOLS``), in listing order: ``removal`` (fixed_pattern, random_missing),
``degradation`` (frame_missing, noise, temporal), ``partial`` (partial_corruption), ``validation`` (hidden,
not part of ``all``). See docs/protocols.md.
"""

# isort: off
# corruption functions first, then the protocols built from them, in listing (registration) order
from corruptions import missing, noise, temporal  # noqa: F401
from corruptions import removal, degradation, partial, validation  # noqa: F401
# isort: on
