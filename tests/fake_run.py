"""A run directory written without training: the records a real run of the given methods, protocols and seeds
would store (every registered condition of every protocol, every metric of each task), with made-up but
plausible values, and a run.json in the current schema (reference, selection, backbone, budget, timings).
Reports are pure functions of these files, so their tables, LaTeX and figures can be tested at full size in
seconds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from corruptions.spec import FeatureStats
from harness.data import DataOptions
from harness.metrics import metrics_for
from harness.registry import DATASETS, PROTOCOLS

BACKBONE = {"mode": "shared", "seq_encoder": "lstm", "utt_encoder": "mlp", "hidden": 64, "embed": 64, "dropout": 0.1,
            "regression_loss": "l1", "batch_size": 64, "epochs": 30, "patience": 8, "optimizer": "adamw",
            "lr": 0.001, "weight_decay": 0.0001, "lr_schedule": "constant"}


def _value(rng: np.random.Generator, metric: str, skill: float, loss: float) -> float:
    if metric == "mae":
        return float(0.45 + 0.5 * loss + 0.1 * (1 - skill) + rng.normal(0, 0.01))
    if metric == "corr":
        return float(np.clip(0.75 * skill - 0.4 * loss + rng.normal(0, 0.01), -1, 1))
    return float(np.clip(0.5 + 0.4 * skill - 0.3 * loss + rng.normal(0, 0.015), 0, 1))


def write_fake_run(root: Path, methods: Sequence[str], protocols: Sequence[str], seeds: int = 3,
                   datasets: Sequence[str] = ("synth-mosi", "synth-iemocap"), reference: str | None = None,
                   policy: str = "complete") -> Path:
    """Write ``root/run.json`` and ``root/records.jsonl``; return ``root``."""
    rng = np.random.default_rng(0)
    rows, cells, specs = [], {}, {}
    for dataset in datasets:
        data = DATASETS.get(dataset)(DataOptions(preset="tiny"))
        stats = FeatureStats.from_batch(data.train)
        usable = [p for p in protocols if PROTOCOLS.get(p).unsupported(data.spec) is None]
        conditions = [(p, PROTOCOLS.get(p), c) for p in usable for c in PROTOCOLS.get(p).conditions(data.spec, stats)]
        metrics = [m.name for m in metrics_for(data.spec.task)]
        specs[dataset] = {"spec": {"task": data.spec.task}, "provenance": {"preset": "small"}, "sizes": {}}
        for i, method in enumerate(methods):
            skill = 0.6 + 0.08 * i
            for seed in range(seeds):
                cell = f"{dataset}__{method}__seed{seed}"
                cells[cell] = {"status": "done", "train_time_s": 2.0 + i + 0.1 * seed, "eval_time_s": 0.5,
                               "n_parameters": 98369 + 1000 * i,
                               "fit": {"epochs_run": 20 + seed, "best_epoch": 12 + seed, "select_metric": "mae"},
                               "selection": {"policy": policy, "metric": "mae" if data.spec.task == "regression"
                                             else "ua"},
                               "backbone": {**BACKBONE, **({"hidden": 128} if i == 2 else {})},
                               "budget": {"epochs": 30, "patience": 8, "batch_size": 64, "epochs_run": 20 + seed}}
                for name, protocol, cond in conditions:
                    loss = (cond.severity or 0.0) * 0.3 if cond.severity is not None else \
                        (0.0 if cond.name == "full" else 0.05 * (4 - len(cond.name.split("+"))) + 0.02 * i)
                    for metric in metrics:
                        rows.append({"dataset": dataset, "method": method, "seed": seed, "protocol": name,
                                     "protocol_version": protocol.version, "protocol_hash": protocol.digest(),
                                     "condition": cond.name, "severity": cond.severity, "curve": cond.curve,
                                     "metric": metric, "value": _value(rng, metric, skill, min(loss, 0.9)),
                                     "n": 64, "cell": cell})
    root.mkdir(parents=True, exist_ok=True)
    meta = {"cells": cells, "datasets": specs, "reference": reference,
            "selection": {"policy": policy, "metric": "auto"}, "reportable": {"ok": True, "reasons": []},
            "started_at": "2026-01-01T00:00:00+00:00",
            "finished_at": "2026-01-01T01:00:00+00:00"}
    (root / "run.json").write_text(json.dumps(meta))
    (root / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
