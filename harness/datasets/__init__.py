"""Dataset loaders. Each registers a function ``load(options: DataOptions) -> Dataset`` in ``DATASETS``."""

from harness.datasets import real, synthetic  # noqa: F401
