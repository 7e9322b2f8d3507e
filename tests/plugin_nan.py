"""A throw-away method whose loss is NaN, registered on import (a failing cell for the CLI tests)."""

from __future__ import annotations

from plugin_method import MeanOfModalities

from harness.registry import METHODS


@METHODS.register("test_nan_plugin")
class NaNLoss(MeanOfModalities):
    def training_loss(self, batch, generator):
        return super().training_loss(batch, generator) * float("nan")
