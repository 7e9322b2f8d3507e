"""The method contract, checked for every registered method the moment it is registered.

Every method must: give finite predictions of the right shape, give every trainable parameter a gradient
from its training loss, accept any ``present`` mask (down to a single modality, and mixed per row), read only
the modalities ``present`` marks available, be deterministic for a seed, and train through ``fit``.
"""

from __future__ import annotations

import math

import pytest
import torch

from harness.config import method_config
from harness.data import Dataset
from harness.registry import METHODS
from harness.seeding import seed_everything, torch_generator
from harness.training import FitContext

METHOD_NAMES = METHODS.names()
FAST = {"*": {"epochs": 1, "batch_size": 32}}


def build(name: str, data: Dataset, seed: int = 0, options: dict | None = None):
    seed_everything(seed)
    cfg = method_config(name, options or FAST)
    return METHODS.get(name)(data.spec, cfg)


def expected_shape(data: Dataset, n: int) -> tuple[int, ...]:
    return (n,) if data.spec.task == "regression" else (n, data.spec.num_outputs)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_output_shape_and_finite(name: str, tiny_data: Dataset) -> None:
    model = build(name, tiny_data)
    out = model.predict(tiny_data.test)
    assert out.shape == expected_shape(tiny_data, len(tiny_data.test))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_parameter_gets_a_gradient(name: str, tiny_data: Dataset) -> None:
    model = build(name, tiny_data)
    model.train()
    loss = model.training_loss(tiny_data.train, torch_generator(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: parameters without gradient: {missing}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad}"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_any_present_mask_and_only_present_modalities_are_read(name: str, tiny_data: Dataset) -> None:
    model = build(name, tiny_data)
    test = tiny_data.test
    n, mods = len(test), tiny_data.spec.modalities
    for j, kept in enumerate(mods):  # all but one modality missing
        keep = torch.zeros(len(mods), dtype=torch.bool)
        keep[j] = True
        dropped = test.drop(keep)
        out = model.predict(dropped)
        assert out.shape == expected_shape(tiny_data, n) and torch.isfinite(out).all(), kept
        # Garbage in the removed modalities' features must not change anything: only `present` counts.
        garbage = {m: torch.randn_like(v) * 5 for m, v in dropped.x.items() if m != kept}
        assert torch.allclose(model.predict(dropped.replace_features(garbage)), out, atol=1e-5), kept
    rows = torch.rand(n, len(mods), generator=torch_generator(1)) < 0.5
    rows[torch.arange(n), torch.arange(n) % len(mods)] = True  # mixed per-row masks, at least one kept
    out = model.predict(test.drop(rows))
    assert out.shape == expected_shape(tiny_data, n) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_deterministic_for_a_seed(name: str, tiny_mosi: Dataset) -> None:
    outs, losses = [], []
    for _ in range(2):
        model = build(name, tiny_mosi, seed=7)
        outs.append(model.predict(tiny_mosi.test))
        model.train()
        losses.append(model.training_loss(tiny_mosi.train, torch_generator(3)).item())
    assert torch.equal(outs[0], outs[1])
    assert losses[0] == losses[1]
    other = build(name, tiny_mosi, seed=8).predict(tiny_mosi.test)
    assert not torch.equal(outs[0], other), "different seeds should give different initialisations"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_fit_trains_and_selects_on_validation(name: str, tiny_mosi: Dataset) -> None:
    model = build(name, tiny_mosi, options={"*": {"epochs": 2, "batch_size": 32}})
    ctx = FitContext(torch.device("cpu"), torch_generator(0), seed=0)
    result = model.fit(tiny_mosi, ctx)
    assert result.select_metric == "mae"
    assert 0 <= result.best_epoch < result.epochs_run
    assert math.isfinite(result.best_value)
    assert torch.isfinite(model.predict(tiny_mosi.test)).all()
