"""Benchmark: batched evaluation over all conditions (``harness.evaluate.evaluate``) against a Python loop that
builds one corrupted copy and runs one ``predict`` per condition, for the same model, data and conditions.

Both variants run in this one process, interleaved over several repeats; the result is a ratio (median
seconds, loop / batched). Run: ``python benchmarks/bench_evaluate.py [--device cuda] [--preset small]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from corruptions.spec import FeatureStats
from harness import builtins
from harness.config import method_config
from harness.data import DataOptions
from harness.evaluate import condition_generator, evaluate, expand
from harness.registry import DATASETS, METHODS, PROTOCOLS


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--method", default="vanilla_fusion")
    ap.add_argument("--protocols", default="all")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    builtins.load()
    device = torch.device(args.device)
    data = DATASETS.get("synth-mosi")(DataOptions(preset=args.preset))
    pairs = expand([PROTOCOLS.get(n) for n in PROTOCOLS.resolve(args.protocols.split(","))], data.spec,
                   FeatureStats.from_batch(data.train))
    test = data.test.to(device)
    model = METHODS.get(args.method)(data.spec, method_config(args.method, {})).to(device)

    def batched() -> None:
        evaluate(model, test, pairs)

    def loop() -> None:
        for p, c in pairs:
            model.predict(c.apply(test, condition_generator(p, c))).cpu()

    times: dict[str, list[float]] = {"batched": [], "loop": []}
    batched(), loop()  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("batched", batched), ("loop", loop)):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(pairs)} conditions x {len(test)} test samples, {args.method}, {device}: "
          f"batched {med['batched']:.3f}s, loop {med['loop']:.3f}s, ratio loop/batched = "
          f"{med['loop'] / med['batched']:.2f}")


if __name__ == "__main__":
    main()
