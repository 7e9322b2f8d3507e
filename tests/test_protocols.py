"""Protocols: conditions and their names, versions and hashes, bad input, batched evaluation, the CLI."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from corruptions.base import Condition, Protocol
from corruptions.degradation import FrameMissing, Noise, Temporal
from corruptions.partial import PartialCorruption, Step
from corruptions.removal import FixedPattern, RandomMissing
from corruptions.spec import FeatureStats
from harness import runner
from harness.cli import app
from harness.config import STANDARD_PROTOCOLS, RunConfig
from harness.data import Batch, Dataset, DatasetSpec
from harness.evaluate import condition_generator, evaluate, expand, prediction_arrays, to_records
from harness.registry import CORRUPTIONS, METRICS, PROTOCOLS, UnknownNameError
from harness.store import RunStore

TEST_PROTOCOLS = PROTOCOLS.resolve(["all"])
# Condition counts on synth-mosi (3 modalities, sequences). Changing one means changing a protocol: bump its version.
COUNTS = {"fixed_pattern": 7, "random_missing": 21, "frame_missing": 20, "noise": 28, "temporal": 21,
          "partial_corruption": 2, "validation": 6, "missing_rate": 21, "noise_multibench": 40}
# Hashes of the registered definitions: if one changes, the definition changed. Bump the version if the
# semantics changed, then update the hash here.
DIGESTS = {"fixed_pattern": "a59dd97cbb09", "random_missing": "e6daa0d6ad9c", "frame_missing": "387b9079fb24",
           "noise": "49a644a5d500", "temporal": "5aa24eed296e", "partial_corruption": "8263f3949cad",
           "validation": "3682843d6287", "missing_rate": "1dd5ac2fb4d2", "noise_multibench": "f36576172e07"}
# Versions: bump one only with a change of semantics (fixed_pattern v2: samples with none of a pattern's
# modalities are not scored under it).
VERSIONS = {"fixed_pattern": 2, "random_missing": 1, "frame_missing": 1, "noise": 1, "temporal": 1,
            "partial_corruption": 1, "validation": 1, "missing_rate": 1, "noise_multibench": 1}
NAME = re.compile(r"^[A-Za-z0-9_.+=\-]+(/[A-Za-z0-9_.+=\-]+)*$")


@pytest.fixture(scope="module")
def stats(tiny_mosi: Dataset) -> FeatureStats:
    return FeatureStats.from_batch(tiny_mosi.train)


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_protocol_contract(name: str, tiny_mosi: Dataset, stats: FeatureStats) -> None:
    p: Protocol = PROTOCOLS.get(name)
    assert isinstance(p.version, int) and p.version >= 1 and p.family and p.paper
    assert p.digest() == DIGESTS[name] == type(p)().digest() and p.version == VERSIONS[name]
    with pytest.raises(AttributeError):
        p.name = "other"  # type: ignore[misc]
    conds = p.conditions(tiny_mosi.spec, stats)
    assert len(conds) == COUNTS[name]
    assert len({c.name for c in conds}) == len(conds) and all(NAME.match(c.name) for c in conds)
    for c in conds:
        assert c.corruptions and all(k in CORRUPTIONS for k in c.corruptions)
        assert c.severity is None or (c.severity >= 0 and c.curve)
    first = conds[0].apply(tiny_mosi.test, condition_generator(p, conds[0]))
    assert first.present.any(1).all()


def test_condition_names_severities_and_curves(tiny_mosi: Dataset, stats: FeatureStats) -> None:
    spec = tiny_mosi.spec
    rm = RandomMissing().conditions(spec)
    assert [c.name for c in rm[:4]] == ["r=0.1/seed=0", "r=0.1/seed=1", "r=0.1/seed=2", "r=0.2/seed=0"]
    assert rm[-1].name == "r=0.7/seed=2" and rm[4].severity == 0.2 and rm[0].curve == "random_missing"
    noise = {c.name: c for c in Noise().conditions(spec, stats)}
    c = noise["gaussian/snr=10dB/modality=audio"]
    assert c.curve == "noise/gaussian/audio" and c.severity == pytest.approx(10 ** -0.5)
    assert noise["impulse/p=0.05/modality=all"].severity == 0.05
    frames = [c.name for c in FrameMissing().conditions(spec)]
    assert frames[:2] == ["iid/r=0", "iid/r=0.1"] and frames[-1] == "block/r=0.9"
    temporal = [c.name for c in Temporal().conditions(spec)]
    assert "shuffle/f=0.5/modality=all" in temporal and "shift/k=2/modality=audio" in temporal
    partial = PartialCorruption().conditions(spec, stats)
    assert [(c.name, c.severity) for c in partial] == [("light/frac=0.3", 0.3), ("heavy/frac=0.6", 0.6)]
    assert [c.name for c in FixedPattern().conditions(spec)][:2] == ["full", "text+audio"]


def test_hash_changes_with_parameters_not_otherwise() -> None:
    assert RandomMissing().digest() == RandomMissing(rates=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)).digest()
    assert RandomMissing(rates=(0.1, 0.2)).digest() != RandomMissing().digest()
    assert Noise(power="modality").digest() != Noise().digest()
    assert PartialCorruption(levels=(("light", 0.1),)).digest() != PartialCorruption().digest()


@pytest.mark.parametrize(("make", "message"), [
    (lambda: RandomMissing(rates=(1.0,)), r"random_missing.rates: 1.0 is out of range; valid: \[0, 1\)"),
    (lambda: RandomMissing(rates=(-0.1, 0.2)), r"random_missing.rates: -0.1 is out of range"),
    (lambda: RandomMissing(rates=()), r"random_missing.rates must be a non-empty tuple"),
    (lambda: RandomMissing(seeds=(-1,)), r"random_missing.seeds: -1 is out of range"),
    (lambda: FrameMissing(rates=(0.5, 1.5)), r"frame_missing.rates: 1.5 is out of range; valid: \[0, 1\)"),
    (lambda: FrameMissing(variants=("tmfm",)), r"frame_missing.variants: 'tmfm' is unknown"),
    (lambda: Noise(snr_db=(), impulse_rates=()), "both empty"),
    (lambda: Noise(snr_db=(10.0, float("nan"))), r"noise.snr_db: nan is out of range; valid: \[-40, inf\]"),
    (lambda: Noise(impulse_rates=(1.2,)), r"noise.impulse_rates: 1.2 is out of range; valid: \[0, 1\)"),
    (lambda: Noise(impulse_rates=(1.0,)), r"noise.impulse_rates: 1.0 is out of range; valid: \[0, 1\)"),
    (lambda: Noise(snr_db=(-41.0,)), r"noise.snr_db: -41.0 is out of range; valid: \[-40, inf\]"),
    (lambda: Noise(snr_db=3), r"noise.snr_db must be a tuple of values in \[-40, inf\] \(the levels themselves, "
                              r"not how many\), got the number 3"),
    (lambda: Noise(snr_db=-2), r"noise.snr_db must be a tuple .* got the number -2"),
    (lambda: Noise(snr_db=[10.0]), r"noise.snr_db must be a tuple of values in \[-40, inf\], got \[10.0\]"),
    (lambda: Noise(impulse_rates=2), r"noise.impulse_rates must be a tuple .* got the number 2"),
    (lambda: RandomMissing(seeds=3), r"random_missing.seeds must be a non-empty tuple .* got the number 3"),
    (lambda: FixedPattern(available=("text", "audio")), r"each a tuple of modality names"),
    (lambda: Noise(power="peak"), "noise.power = 'peak' is invalid"),
    (lambda: Temporal(shift_steps=(0,)), r"temporal.shift_steps: 0 is out of range"),
    (lambda: PartialCorruption(levels=(("light", 0.0),)), r"fraction in \(0, 1\]"),
])
def test_bad_protocol_parameters_are_clear_value_errors(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_parameters_that_do_not_fit_the_dataset(tiny_mosi: Dataset, tiny_iemocap: Dataset, stats) -> None:
    with pytest.raises(ValueError, match=r"pattern \['text', 'depth'\] names modalities \['depth'\] that dataset"):
        FixedPattern(available=(("text", "depth"),)).conditions(tiny_mosi.spec)
    assert [c.name for c in FixedPattern(available=(("audio", "text"),)).conditions(tiny_mosi.spec)] == ["text+audio"]
    with pytest.raises(ValueError, match=r"noise.targets: \['depth'\] not valid .* valid: \['all', 'text'"):
        Noise(targets=("depth",)).conditions(tiny_mosi.spec, stats)
    with pytest.raises(ValueError, match=r"modalities \['depth'\] are not in the data"):
        RandomMissing(modalities=("depth",)).conditions(tiny_mosi.spec)
    with pytest.raises(ValueError, match=r"steps = 9 is out of range for modality 'text'; valid: abs\(steps\) < T = 8"):
        Temporal(shift_steps=(9,)).conditions(tiny_mosi.spec)
    with pytest.raises(ValueError, match="noise needs the training split's feature statistics"):
        Noise().conditions(tiny_mosi.spec)
    with pytest.raises(UnknownNameError, match="Did you mean 'gaussian_noise'"):
        PartialCorruption(recipe=(Step("gausian_noise", (("snr_db", 10.0),)),))
    for p in (FrameMissing(), Temporal(), PartialCorruption()):
        with pytest.raises(ValueError, match=r"needs sequences \(T > 1\); dataset 'synth-iemocap'"):
            p.conditions(tiny_iemocap.spec, FeatureStats.from_batch(tiny_iemocap.train))


def test_validation_family_is_held_out(tiny_mosi: Dataset, stats: FeatureStats) -> None:
    held_out = {n for n in CORRUPTIONS.names() if CORRUPTIONS.get(n).family == "validation"}
    assert held_out and "validation" not in TEST_PROTOCOLS and PROTOCOLS.is_hidden("validation")
    used = {k for name in TEST_PROTOCOLS for c in PROTOCOLS.get(name).conditions(tiny_mosi.spec, stats)
            for k in c.corruptions}
    assert used and not used & held_out
    assert {k for c in PROTOCOLS.get("validation").conditions(tiny_mosi.spec, stats) for k in c.corruptions} == held_out


@dataclass(frozen=True)
class LeakyProtocol(Protocol):
    """A test protocol that (wrongly) uses a validation-family corruption; never registered."""

    name = "leaky"
    version = 1
    family = "noise"

    def conditions(self, spec: DatasetSpec, stats: FeatureStats | None = None) -> list[Condition]:
        dropout = CORRUPTIONS.get("feature_dropout")
        return [Condition("drop", dropout.bind(spec, rate=0.3), severity=0.3, curve="leaky",
                          corruptions=(dropout.name,))]


def test_held_out_and_test_protocols_never_mix(tiny_mosi: Dataset, stats: FeatureStats, tmp_path: Path) -> None:
    validation = PROTOCOLS.get("validation")
    with pytest.raises(ValueError, match=r"'validation' is a held-out tuning family .* never evaluated on the test"):
        expand([PROTOCOLS.get("fixed_pattern"), validation], tiny_mosi.spec, stats)
    assert len(expand([validation], tiny_mosi.spec, stats, held_out=True)) == COUNTS["validation"]
    with pytest.raises(ValueError, match=r"'noise' is a test protocol: tuning may only use .*\['validation'\]"):
        expand([validation, PROTOCOLS.get("noise")], tiny_mosi.spec, stats, held_out=True)
    with pytest.raises(ValueError, match=r"condition 'drop' uses the held-out \(tuning\) corruption\(s\) "
                                         r"\['feature_dropout'\]"):
        expand([LeakyProtocol()], tiny_mosi.spec, stats)
    cfg = RunConfig(methods=("vanilla_fusion",), datasets=("synth-mosi",), seeds=(0,), preset="tiny",
                    out=str(tmp_path / "r"), device="cpu", protocols=("fixed_pattern", "validation"))
    with pytest.raises(ValueError, match="held-out tuning family"):
        runner.run(cfg)  # fails while checking the protocols, before any training or output
    assert not (tmp_path / "r").exists()


def test_default_set_and_all() -> None:
    assert RunConfig().protocols == STANDARD_PROTOCOLS == ("fixed_pattern", "missing_rate", "noise")
    assert set(TEST_PROTOCOLS) == set(COUNTS) - {"validation"}


def test_explicit_protocol_that_does_not_fit_fails_before_training(tmp_path: Path) -> None:
    cfg = RunConfig(methods=("vanilla_fusion",), datasets=("synth-iemocap",), seeds=(0,), preset="tiny",
                    out=str(tmp_path / "r"), device="cpu", protocols=("fixed_pattern", "frame_missing"))
    with pytest.raises(ValueError, match=r"frame_missing needs sequences \(T > 1\)"):
        runner.run(cfg)
    assert not (tmp_path / "r").exists()
    with pytest.raises(UnknownNameError, match="Did you mean 'random_missing'"):
        runner.prepare(RunConfig(protocols=("random_mising",)))


def test_implicit_protocols_are_skipped_where_they_do_not_fit(tiny_mosi: Dataset, tiny_iemocap: Dataset) -> None:
    plan = runner.prepare(RunConfig(methods=("vanilla_fusion",), protocols=("all",), device="cpu"))
    used, skipped = plan.protocols_for(tiny_iemocap)
    assert set(skipped) == {"frame_missing", "temporal", "partial_corruption"}
    assert {p.name for p in used} == {"fixed_pattern", "random_missing", "missing_rate", "noise", "noise_multibench"}
    assert plan.protocols_for(tiny_mosi)[1] == {}


class SumModel:
    """A stand-in predictor (per-sample sum of present features) that counts its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, batch: Batch) -> torch.Tensor:
        self.calls.append(len(batch))
        return sum(batch.x[m].sum((1, 2)) * batch.present[:, j] for j, m in enumerate(batch.x))


class StrictSumModel(SumModel):
    """Refuses a row with no modality: methods are not required to accept one (tests/test_method_contract.py)."""

    def predict(self, batch: Batch) -> torch.Tensor:
        assert batch.present.any(1).all(), "a model was given a sample with no modality"
        return super().predict(batch)


def test_batched_evaluation_equals_one_condition_at_a_time(tiny_mosi: Dataset, stats: FeatureStats) -> None:
    pairs = expand([PROTOCOLS.get(n) for n in ("fixed_pattern", "random_missing", "noise")], tiny_mosi.spec, stats)
    test, model = tiny_mosi.test, SumModel()
    batched = evaluate(model, test, pairs, max_bytes=5 * sum(v.numel() * 4 for v in test.x.values()))
    assert model.calls == [5 * len(test)] * 11 + [len(test)]  # 56 conditions in chunks of 5: 12 forward calls
    for r, (p, c) in zip(batched, pairs, strict=True):
        alone = model.predict(c.apply(test, condition_generator(p, c))).numpy()
        assert (r.protocol, r.condition) == (p, c)
        np.testing.assert_array_equal(r.pred, alone)


def natural_missingness(test: Batch) -> Batch:
    """Rows 0-3 lack audio, row 4 has only text, row 5 only audio, row 6 only vision (as real data may)."""
    keep = torch.ones(len(test), 3, dtype=torch.bool)
    keep[:4, 1] = False
    for row, only in ((4, 0), (5, 1), (6, 2)):
        keep[row] = False
        keep[row, only] = True
    return test.drop(keep)


def test_fixed_pattern_scores_only_samples_with_one_of_its_modalities(tiny_mosi: Dataset) -> None:
    """A sample with none of a pattern's modalities is left out of that condition's metric (n counts the scored
    ones), its stored prediction is NaN, and no model ever receives an all-missing row."""
    test = natural_missingness(tiny_mosi.test)
    pairs = expand([FixedPattern()], tiny_mosi.spec)
    model = StrictSumModel()
    results = {r.condition.name: r for r in evaluate(model, test, pairs)}
    target = test.y.numpy()
    records = to_records(list(results.values()), target, tiny_mosi.spec, {"seed": 0})
    n = {r["condition"]: r["n"] for r in records}
    has = test.present.numpy()
    assert n["full"] == len(test)
    assert n["text+audio"] == n["text+vision"] == n["audio+vision"] == len(test) - 1  # rows 6, 5, 4
    assert n["text"] == n["vision"] == len(test) - 2 and n["audio"] == len(test) - 6
    for name, cols in (("audio", [1]), ("text", [0]), ("audio+vision", [1, 2])):
        rows = has[:, cols].any(1)
        assert np.isnan(results[name].pred[~rows]).all() and not np.isnan(results[name].pred[rows]).any()
        mae = next(r["value"] for r in records if r["condition"] == name and r["metric"] == "mae")
        assert mae == pytest.approx(METRICS.get("mae")(results[name].pred[rows], target[rows]))
    arrays = prediction_arrays(list(results.values()), target, np.arange(len(test)))
    assert arrays["evaluated"].shape == (7, len(test)) and arrays["evaluated"].sum(1).tolist() == list(n.values())


def test_a_condition_that_scores_no_sample_records_nan_with_n_zero(tiny_mosi: Dataset) -> None:
    test = tiny_mosi.test.drop(torch.tensor([True, True, False]))  # no sample has vision
    pairs = expand([FixedPattern(available=(("vision",), ("text",)))], tiny_mosi.spec)
    records = to_records(evaluate(StrictSumModel(), test, pairs), test.y.numpy(), tiny_mosi.spec, {})
    vision = [r for r in records if r["condition"] == "vision"]
    assert vision and all(r["n"] == 0 and np.isnan(r["value"]) for r in vision)
    assert all(r["n"] == len(test) and np.isfinite(r["value"]) for r in records if r["condition"] == "text")


def test_cli_run_records_every_condition_and_list_shows_protocols(tmp_path: Path, tiny_mosi: Dataset) -> None:
    cli = CliRunner()
    out = tmp_path / "run"
    res = cli.invoke(app, ["run", "--protocols", "fixed_pattern,random_missing,noise", "--preset", "tiny", "--set",
                           "epochs=1", "--methods", "vanilla_fusion", "--datasets", "synth-mosi", "--seeds", "1",
                           "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rec: pd.DataFrame = RunStore.read(out).records()
    protocols = [PROTOCOLS.get(n) for n in ("fixed_pattern", "random_missing", "noise")]
    pairs = expand(protocols, tiny_mosi.spec, FeatureStats.from_batch(tiny_mosi.train))
    assert set(zip(rec.protocol, rec.condition, strict=True)) == {(p.name, c.name) for p, c in pairs}
    assert len(pairs) == 7 + 21 + 28 and len(rec) == len(pairs) * 8  # 8 regression metrics
    assert (rec.n == len(tiny_mosi.test)).all()  # synth-mosi has every modality: every condition scores every sample
    for p in protocols:
        mine = rec[rec.protocol == p.name]
        assert (mine.protocol_version == p.version).all() and (mine.protocol_hash == p.digest()).all()
    noise = rec[(rec.protocol == "noise") & (rec.condition == "gaussian/snr=0dB/modality=all")]
    assert (noise.severity == 1.0).all() and (noise.curve == "noise/gaussian/all").all()
    listing = cli.invoke(app, ["list", "protocols"])
    assert listing.exit_code == 0
    lines = listing.output.splitlines()  # a narrow terminal may fold the last column's header onto two lines
    assert next(line.split() for line in lines if line.split()[:1] == ["protocol"])[:4] == [
        "protocol", "family", "version", "hash"]
    for p in protocols:
        fields = next(line.split() for line in lines if line.split()[:1] == [p.name])
        assert fields[1:5] == [p.family, str(VERSIONS[p.name]), p.digest(), f"{COUNTS[p.name]}:"], fields
    assert "validation" not in listing.output.split("The held-out")[0]
    full = cli.invoke(app, ["list", "protocols", "--validation", "--conditions"])
    assert "r=0.3/seed=1" in full.output and "quantize/bits=4" in full.output
