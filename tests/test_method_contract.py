"""The method contract, checked for every registered method the moment it is registered.

Every method must: give finite predictions of the right shape, give every trainable parameter a gradient
from its training loss, accept any ``present`` mask (down to a single modality, and mixed per row), read only
the modalities ``present`` marks available, be deterministic for a seed (at initialisation and through ``fit``),
and train through ``fit``. Besides each method's default config, ``VARIANTS`` runs the same checks on options
that change the network (a learned missing-modality token, early fusion).

Every config must type-check each of its fields (the command line's strings of the defaults must round-trip
through ``harness.config.method_config``), and every number on a method card must name a registered metric,
dataset, protocol and condition, or reports cannot show it.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

import pytest
import torch

from harness.config import method_config
from harness.data import Dataset
from harness.registry import DATASETS, METHODS, METRICS, PROTOCOLS
from harness.seeding import seed_everything, torch_generator
from harness.training import FitContext

METHOD_NAMES = METHODS.names()
FAST = {"epochs": 1, "batch_size": 32}
# Registered methods with non-default options that change the network, checked like the defaults.
VARIANTS = {"modality_dropout-token": ("modality_dropout", {"fill": "token"}),
            "vanilla_fusion-early": ("vanilla_fusion", {"fusion": "early"})}
CASES = [pytest.param(n, {}, id=n) for n in METHOD_NAMES] + [
    pytest.param(n, opts, id=case) for case, (n, opts) in VARIANTS.items()]


def config(name: str, options: dict[str, Any] | None = None, **shared: Any) -> Any:
    """``name``'s config as the command line would build it: ``FAST`` (+ ``shared``) for every method, then
    ``options`` for this one."""
    return method_config(name, {"*": {**FAST, **shared}, name: options or {}})


def build(name: str, data: Dataset, seed: int = 0, options: dict[str, Any] | None = None, cfg: Any = None):
    seed_everything(seed)
    return METHODS.get(name)(data.spec, cfg if cfg is not None else config(name, options))


def expected_shape(data: Dataset, n: int) -> tuple[int, ...]:
    return (n,) if data.spec.task == "regression" else (n, data.spec.num_outputs)


def shortest(cfg: Any) -> Any:
    """``cfg`` with every epoch count (``epochs``, ``teacher_epochs``...) at 1, the least any config allows, so
    that methods with several training stages fit as cheaply as the others."""
    names = [f.name for f in dataclasses.fields(cfg) if f.name == "epochs" or f.name.endswith("_epochs")]
    return dataclasses.replace(cfg, **{n: 1 for n in names})


@pytest.mark.parametrize(("name", "options"), CASES)
def test_output_shape_and_finite(name: str, options: dict, tiny_data: Dataset) -> None:
    model = build(name, tiny_data, options=options)
    out = model.predict(tiny_data.test)
    assert out.shape == expected_shape(tiny_data, len(tiny_data.test))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "options"), CASES)
def test_every_parameter_gets_a_gradient(name: str, options: dict, tiny_data: Dataset) -> None:
    model = build(name, tiny_data, options=options)
    model.train()
    loss = model.training_loss(tiny_data.train, torch_generator(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: parameters without gradient: {missing}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad}"


@pytest.mark.parametrize(("name", "options"), CASES)
def test_any_present_mask_and_only_present_modalities_are_read(name: str, options: dict, tiny_data: Dataset) -> None:
    model = build(name, tiny_data, options=options)
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


@pytest.mark.parametrize(("name", "options"), CASES)
def test_deterministic_for_a_seed(name: str, options: dict, tiny_mosi: Dataset) -> None:
    outs, losses = [], []
    for _ in range(2):
        model = build(name, tiny_mosi, seed=7, options=options)
        outs.append(model.predict(tiny_mosi.test))
        model.train()
        losses.append(model.training_loss(tiny_mosi.train, torch_generator(3)).item())
    assert torch.equal(outs[0], outs[1])
    assert losses[0] == losses[1]
    other = build(name, tiny_mosi, seed=8, options=options).predict(tiny_mosi.test)
    assert not torch.equal(outs[0], other), "different seeds should give different initialisations"


@pytest.mark.parametrize(("name", "options"), CASES)
def test_fit_is_deterministic_for_a_seed(name: str, options: dict, tiny_mosi: Dataset) -> None:
    """Two fits with the same seed (initialisation, batches, every random draw of training) predict the same."""
    cfg = shortest(config(name, options))
    preds, values = [], []
    for _ in range(2):
        model = build(name, tiny_mosi, seed=4, cfg=cfg)
        result = model.fit(tiny_mosi, FitContext(torch.device("cpu"), torch_generator(4), seed=4))
        preds.append(model.predict(tiny_mosi.test))
        values.append(result.best_value)
    assert torch.equal(preds[0], preds[1]), f"{name}: two fits with one seed predict differently"
    assert values[0] == values[1] or (math.isnan(values[0]) and math.isnan(values[1]))


@pytest.mark.parametrize(("name", "options"), CASES)
def test_fit_trains_and_selects_on_validation(name: str, options: dict, tiny_mosi: Dataset) -> None:
    model = build(name, tiny_mosi, cfg=config(name, options, epochs=2))
    ctx = FitContext(torch.device("cpu"), torch_generator(0), seed=0)
    result = model.fit(tiny_mosi, ctx)
    assert result.select_metric == "mae"
    assert 0 <= result.best_epoch < result.epochs_run
    assert math.isfinite(result.best_value)
    assert torch.isfinite(model.predict(tiny_mosi.test)).all()


# ------------------------------------------------------------------------------------------- configs and cards


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_config_field_is_type_checked(name: str) -> None:
    """A value no annotation admits (except ``Any``) is refused by every field, naming the class and field."""
    cls = METHODS.get(name).Config
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if hints[f.name] is Any:
            continue
        with pytest.raises(ValueError, match=rf"^{cls.__name__}\.{f.name} = <object object .*expected"):
            cls(**{f.name: object()})


def command_line_text(value: Any) -> str:
    """How a user writes ``value`` with ``--set KEY=VALUE`` (``KEY=`` for an empty tuple)."""
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_command_line_strings_fit_the_type_check(name: str) -> None:
    """``method_config`` coerces strings to each field's annotation; the result must pass the config's own type
    check and equal the default it spells (so the two agree on ints, floats, bools, tuples and literals)."""
    default = METHODS.get(name).Config()
    for f in dataclasses.fields(default):
        value = getattr(default, f.name)
        built = method_config(name, {name: {f.name: command_line_text(value)}})
        assert getattr(built, f.name) == value, f.name


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_reported_numbers_name_registered_metrics(name: str, tiny_mosi: Dataset) -> None:
    """Reports match a card's numbers by (dataset, metric, protocol, condition) (``reports.views.with_reported``):
    a name that is not registered would never be shown, or could be shown as some other metric."""
    for rep in METHODS.get(name).card.reported:
        assert rep.metric in METRICS, f"{name}: reported metric {rep.metric!r} is not a registered metric"
        assert rep.dataset in DATASETS, f"{name}: reported dataset {rep.dataset!r} is not registered"
        conditions = [c.name for c in PROTOCOLS.get(rep.protocol).conditions(tiny_mosi.spec)]  # same modalities
        assert rep.condition in conditions, f"{name}: condition {rep.condition!r} not in {conditions}"
        if METRICS.get(rep.metric).scale == 100:  # a percentage metric: stored as a fraction (0.81, not 81.0)
            assert 0 <= rep.value <= 1, f"{name}: {rep.metric} = {rep.value} must be a fraction"
