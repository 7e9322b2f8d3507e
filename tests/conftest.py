"""Shared fixtures: tiny synthetic datasets (built once per session) and throw-away registrations."""

from __future__ import annotations

import pytest
import torch

from harness import builtins
from harness.data import DataOptions, Dataset
from harness.registry import DATASETS

builtins.load()
torch.set_num_threads(1)  # tiny models: intra-op threads only contend (the runner does the same by default)


@pytest.fixture(scope="session")
def tiny_mosi() -> Dataset:
    return DATASETS.get("synth-mosi")(DataOptions(preset="tiny"))


@pytest.fixture(scope="session")
def tiny_iemocap() -> Dataset:
    return DATASETS.get("synth-iemocap")(DataOptions(preset="tiny"))


@pytest.fixture(params=["synth-mosi", "synth-iemocap"])
def tiny_data(request: pytest.FixtureRequest, tiny_mosi: Dataset, tiny_iemocap: Dataset) -> Dataset:
    return tiny_mosi if request.param == "synth-mosi" else tiny_iemocap
