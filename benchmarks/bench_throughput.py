"""Benchmark: the same grid in the sequential reference mode and in the fast mode, side by side in one run.

Reference: ``--executor sequential --workers 1`` (one model at a time, the way results are defined). Fast:
``--executor auto`` (on a GPU: seed groups of stackable methods trained as one stacked computation, the other
methods in ``--workers`` processes sharing the GPU; on a CPU: one worker process per core). Each method's grid
runs in both modes, one after the other, so the two wall times are measured on the same machine in the same
state. Per method it prints

- model-epochs per second in each mode and the speed-up ratio (a model-epoch is one epoch of one network: MMIN's
  teacher and MMIN both count, as do the epochs of members that stopped early in a stacked group),
- peak GPU memory (``torch.cuda.max_memory_allocated`` in the driver, plus the peak used memory that
  ``nvidia-smi`` reported while the fast mode ran, which includes worker processes) and GPU utilisation
  sampled every 0.5 s during the fast mode (``n/a`` without a GPU),
- the full grid's wall time in each mode,
- whether fast and reference metrics agree within seed noise: per (dataset, protocol) the per-seed mean of the
  headline metric (MAE / UA) under both modes, compared by Welch's t-test; "agree" when no p < 0.01.

``--quick``: a reduced CPU form (synth-mosi small, 8 seeds, the four methods at 6 epochs, fixed patterns and the
missing rate) that runs in a few minutes on 2 cores. Without it: the paper-scale grid (every method and
ModalImmune ablation, synth-mosi and synth-iemocap at the full preset, 10 seeds, the default protocols).

Run: ``python benchmarks/bench_throughput.py [--quick] [--device cuda] [--workers N] [--out DIR]``; the
report is printed as Markdown (docs/performance.md holds the latest one, with its date, hardware and commit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from harness import builtins, runner
from harness.config import build_run_config
from harness.provenance import git_state
from harness.registry import METHODS

QUICK = {"methods": ["vanilla_fusion", "modality_dropout", "mmin", "modal_immune"], "datasets": "synth-mosi",
         "preset": "small", "seeds": "8", "protocols": "fixed_pattern,missing_rate", "epochs": 6}
FULL = {"methods": None, "datasets": "synth-mosi,synth-iemocap", "preset": "full", "seeds": "10",
        "protocols": None, "epochs": None}


class GpuSampler:
    """Samples GPU utilisation (%) and used memory (MiB) with nvidia-smi every 0.5 s, in a background thread."""

    def __init__(self) -> None:
        self.util: list[float] = []
        self.mem: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
                util, mem = (float(v) for v in out.stdout.splitlines()[0].split(","))
                self.util.append(util)
                self.mem.append(mem)
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            self.stop.wait(0.5)

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def model_epochs(run_dir: Path) -> int:
    meta = json.loads((run_dir / "run.json").read_text())
    total = 0
    for cell in meta["cells"].values():
        stages = cell.get("budget", {}).get("stages") or {"train": cell["fit"]["epochs_run"]}
        total += sum(stages.values())
    return total


def run_grid(grid: dict, method: str, mode: str, device: str, workers: int, out: Path) -> dict:
    options = {"*": {"epochs": str(grid["epochs"])}} if grid["epochs"] else {}
    executor = {"reference": "sequential", "fast": "auto"}[mode]
    cfg = build_run_config(methods=method, datasets=grid["datasets"], preset=grid["preset"], seeds=grid["seeds"],
                           protocols=grid["protocols"], out=str(out), device=device, method_options=options,
                           executor=executor, workers=1 if mode == "reference" else workers)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with GpuSampler() as gpu:
        start = time.perf_counter()
        summary = runner.run(cfg)
        wall = time.perf_counter() - start
    if summary.failed:
        raise RuntimeError(f"{method} ({mode}): cells failed: {summary.failed}")
    epochs = model_epochs(out)
    return {"wall_s": wall, "model_epochs": epochs, "epochs_per_s": epochs / wall,
            "peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
            "smi_mem_mib": max(gpu.mem) if gpu.mem else None,
            "gpu_util_mean": float(np.mean(gpu.util)) if gpu.util else None,
            "records": pd.read_json(out / "records.jsonl", lines=True)}


def agreement(ref: pd.DataFrame, fast: pd.DataFrame) -> tuple[bool, float]:
    """Welch's t-test per (dataset, protocol) on the per-seed mean of the headline metric: (agree, min p)."""
    pvalues = []
    for (dataset, protocol), part in ref.groupby(["dataset", "protocol"]):
        metric = "mae" if "mae" in set(part.metric) else "ua"
        a = part[part.metric == metric].groupby("seed").value.mean()
        other = fast[(fast.dataset == dataset) & (fast.protocol == protocol) & (fast.metric == metric)]
        b = other.groupby("seed").value.mean()
        if a.std() == 0 and b.std() == 0:
            pvalues.append(1.0 if np.allclose(a.mean(), b.mean()) else 0.0)
        else:
            pvalues.append(float(stats.ttest_ind(a, b, equal_var=False).pvalue))
    low = min(pvalues)
    return low >= 0.01, low


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="reduced CPU grid (a few minutes on 2 cores)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=0, help="fast mode's worker processes (0: the default)")
    ap.add_argument("--methods", default=None, help="comma list (default: the grid's)")
    ap.add_argument("--out", type=Path, default=None, help="keep the run directories here (default: a temp dir)")
    args = ap.parse_args()
    builtins.load()
    grid = dict(QUICK if args.quick else FULL)
    methods = (args.methods.split(",") if args.methods else grid["methods"]) or METHODS.resolve(["modal_immune*",
                                                                                                "all"])
    root = args.out or Path(tempfile.mkdtemp(prefix="mibench-bench-"))
    rows, totals = [], {"reference": 0.0, "fast": 0.0}
    for method in methods:
        res = {mode: run_grid(grid, method, mode, args.device, args.workers, root / f"{method}-{mode}")
               for mode in ("reference", "fast")}
        agree, p = agreement(res["reference"]["records"], res["fast"]["records"])
        for mode in totals:
            totals[mode] += res[mode]["wall_s"]
        rows.append((method, res, agree, p))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else (
        platform.processor() or platform.machine())
    print(f"# Throughput: {'quick (CPU) grid' if args.quick else 'paper-scale grid'}\n")
    print(f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}; commit: {git_state()['commit']}; "
          f"torch {torch.__version__}; device: {device}; CPU cores: {os.cpu_count()}")
    print(f"- grid: {grid['datasets']} ({grid['preset']}), {grid['seeds']} seeds, protocols "
          f"{grid['protocols'] or 'default'}, epochs {grid['epochs'] or 'default'}; fast = --executor auto"
          f"{f' --workers {args.workers}' if args.workers else ''}, reference = --executor sequential --workers 1\n")
    print("| method | model-epochs | ref epochs/s | fast epochs/s | speed-up | ref wall (s) | fast wall (s) | "
          "peak GPU MiB (torch / smi) | GPU util % | metrics agree (min Welch p) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for method, res, agree, p in rows:
        r, f = res["reference"], res["fast"]
        print(f"| {method} | {r['model_epochs']} | {r['epochs_per_s']:.2f} | {f['epochs_per_s']:.2f} | "
              f"{f['epochs_per_s'] / r['epochs_per_s']:.2f}x | {r['wall_s']:.1f} | {f['wall_s']:.1f} | "
              f"{fmt(f['peak_mem_mib'], '.0f')} / {fmt(f['smi_mem_mib'], '.0f')} | {fmt(f['gpu_util_mean'], '.0f')} | "
              f"{'yes' if agree else 'NO'} ({p:.3f}) |")
    print(f"\nFull grid wall time: reference {totals['reference']:.1f} s, fast {totals['fast']:.1f} s "
          f"({totals['reference'] / totals['fast']:.2f}x).")
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
