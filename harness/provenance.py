"""Provenance of a run: what ``run.json`` records about the environment and what makes two runs the same.

``identity`` decides whether a run directory can be resumed: the config's result-determining options, the
resolved method options and a digest of every dataset's tensors. ``run_meta`` is everything else recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from harness import __version__
from harness.config import to_jsonable
from harness.data import SPLITS, Dataset

if TYPE_CHECKING:
    from harness.plan import Plan


def run_meta(plan: Plan, datasets: dict[str, Dataset]) -> dict[str, Any]:
    return {
        "config": to_jsonable(plan.config),
        "reference": plan.reference,
        "selection": {"policy": plan.selection.policy, "metric": plan.selection.metric},
        "out": str(plan.out),
        "method_configs": {m: dataclasses.asdict(c) for m, c in plan.method_configs.items()},
        "protocols": [{"name": p.name, "version": p.version, "hash": p.digest(), "params": dataclasses.asdict(p)}
                      for p in plan.protocols],
        "datasets": {n: {"spec": dataclasses.asdict(d.spec), "provenance": dict(d.provenance),
                         "sizes": {s: len(d.split(s)) for s in ("train", "valid", "test")},
                         "class_counts": class_counts(d),
                         "classes_present": _classes_present(d),
                         "skipped_protocols": plan.protocols_for(d)[1]}
                     for n, d in datasets.items()},
        "versions": {"mibench": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "git": git_state(),
        "device": str(plan.device),
        "device_name": torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else platform.processor(),
        "host": platform.node(),
    }


def class_counts(data: Dataset) -> dict[str, dict[str, int]] | None:
    """Per split, the number of samples of each class (classification only): a class with 0 test samples makes UA
    over the class list undefined, and the report says which one."""
    if data.spec.task != "classification":
        return None
    return {s: {c: int((data.split(s).y == k).sum()) for k, c in enumerate(data.spec.classes)} for s in SPLITS}
def _classes_present(data: Dataset) -> dict[str, int]:
    """Distinct classes per split (classification only; reports say when a split holds one)."""
    if data.spec.task != "classification":
        return {}
    return {s: int(data.split(s).y.unique().numel()) for s in SPLITS}


def git_state() -> dict[str, Any]:
    """Commit and dirty flag (tracked or untracked changes, ignored files aside) of the mibench source tree, when
    the installed package *is* a git checkout (not, say, a wheel installed inside some other project's repo)."""
    src = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != src:
            return {"commit": None, "dirty": None}
        return {"commit": git("rev-parse", "HEAD"), "dirty": git("status", "--porcelain") != ""}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def data_fingerprint(data: Dataset) -> str:
    """A digest of every split's tensors: a run resumes only on the very data it started with (a replaced file,
    or a change to a generator, would otherwise mix two datasets under one name)."""
    h = hashlib.blake2b(digest_size=12)
    for split in SPLITS:
        b = data.split(split)
        for t in [*(b.x[m] for m in b.modalities), *(b.lengths[m] for m in b.modalities), b.y, b.present]:
            h.update(str((split, tuple(t.shape), str(t.dtype))).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def identity(plan: Plan, datasets: dict[str, Dataset]) -> dict[str, Any]:
    """What determines a run's numbers. Method options are the resolved configs' non-default fields, so that
    ``--set epochs=1``, ``--set vanilla_fusion.epochs=1`` and ``epochs = 1`` in a TOML file are one run, and an
    option set to its default is no option at all."""
    ident = plan.config.identity()
    ident.pop("backbone_options", None)  # resolved into every method's config below, like method options
    ident.pop("backbone", None)
    options = {}
    for method, cfg in plan.method_configs.items():
        given, default = to_jsonable(cfg), to_jsonable(type(cfg)())
        changed = {k: v for k, v in given.items() if v != default[k]}
        if changed:
            options[method] = changed
    ident["method_options"] = options
    ident["data"] = {name: data_fingerprint(d) for name, d in datasets.items()}
    return ident


def worker_identity(plan: Plan, datasets: dict[str, Dataset]) -> dict[str, Any]:
    """What a worker must agree on with its driver before it trains: the run identity (config, resolved method
    options, data digests), every protocol's definition and the mibench version. A worker on another machine
    with another file at the same path, or another mibench, differs here (:func:`identity_diff`)."""
    return {"identity": identity(plan, datasets), "mibench": __version__,
            "protocols": {p.name: [p.version, p.digest()] for p in plan.protocols}}


def identity_diff(mine: dict[str, Any], driver: dict[str, Any]) -> list[str]:
    """Human-readable differences between a worker's :func:`worker_identity` and the driver's."""
    out = []
    data_w, data_d = mine["identity"].get("data", {}), driver["identity"].get("data", {})
    out += [f"data of {n}: digest {data_w.get(n)} here, {data_d.get(n)} on the driver"
            for n in sorted(set(data_w) | set(data_d)) if data_w.get(n) != data_d.get(n)]
    rest_w = {k: v for k, v in mine["identity"].items() if k != "data"}
    rest_d = {k: v for k, v in driver["identity"].items() if k != "data"}
    out += [f"{k}: {rest_w.get(k)!r} here, {rest_d.get(k)!r} on the driver"
            for k in sorted(set(rest_w) | set(rest_d)) if rest_w.get(k) != rest_d.get(k)]
    out += [f"{k}: {mine[k]!r} here, {driver[k]!r} on the driver" for k in ("mibench", "protocols")
            if mine.get(k) != driver.get(k)]
    return out
