"""Dataset loaders. Each registers a function ``load(options: DataOptions) -> Dataset`` in ``DATASETS``."""

from harness.datasets import synthetic  # noqa: F401
