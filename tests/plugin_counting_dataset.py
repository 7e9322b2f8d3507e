"""A throw-away dataset that records every time it is loaded (the file named by ``MIBENCH_TEST_LOADS``), so a test
can count in which processes a run loads its data. Registered on import."""

from __future__ import annotations

import os

from harness.data import DataOptions, Dataset
from harness.datasets.synthetic import synth_mosi
from harness.registry import DATASETS

NAME = "test_counting_mosi"


@DATASETS.register(NAME)
def counting_mosi(options: DataOptions) -> Dataset:
    """synth-mosi, counting its loads."""
    with open(os.environ["MIBENCH_TEST_LOADS"], "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return synth_mosi(options)
