"""Corruption functions grouped by family, and the versioned protocols built from them (registered on import)."""

from corruptions import removal  # noqa: F401
