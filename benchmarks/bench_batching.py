"""Benchmark: device-resident index-tensor mini-batches (what mibench's training loop does) against a
``torch.utils.data.DataLoader`` over the same tensors, for the same model, steps and device.

Both variants run in this one process, interleaved over several repeats, and the result is reported as a
ratio (median seconds per epoch, DataLoader / index). Run: ``python benchmarks/bench_batching.py [--device cuda]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from harness import builtins
from harness.config import method_config
from harness.data import Batch, DataOptions
from harness.registry import DATASETS, METHODS
from harness.seeding import seed_everything, torch_generator
from harness.training import make_optimizer, minibatches


def epoch_index(model, data: Batch, cfg, gen, device) -> None:
    opt = make_optimizer(model.parameters(), cfg)
    for idx in minibatches(len(data), cfg.batch_size, gen, device):
        loss = model.training_loss(data.index(idx), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def epoch_loader(model, data: Batch, cfg, gen, device) -> None:
    mods = list(data.x)
    cpu = data.to("cpu")
    ds = TensorDataset(*(cpu.x[m] for m in mods), *(cpu.lengths[m] for m in mods), cpu.present, cpu.y)
    opt = make_optimizer(model.parameters(), cfg)
    for parts in DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, generator=torch_generator(0)):
        parts = [p.to(device) for p in parts]
        k = len(mods)
        batch = Batch(dict(zip(mods, parts[:k], strict=True)), dict(zip(mods, parts[k:2 * k], strict=True)),
                      parts[2 * k], parts[2 * k + 1])
        loss = model.training_loss(batch, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    builtins.load()
    device = torch.device(args.device)
    data = DATASETS.get("synth-mosi")(DataOptions(preset=args.preset)).to(device)
    cfg = method_config("vanilla_fusion", {})
    seed_everything(0)
    model = METHODS.get("vanilla_fusion")(data.spec, cfg).to(device)
    gen = torch_generator(0, device)
    times: dict[str, list[float]] = {"index": [], "dataloader": []}
    for _ in range(args.repeats + 1):  # first round is warm-up
        for name, fn in (("index", epoch_index), ("dataloader", epoch_loader)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn(model, data.train, cfg, gen, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    print(f"device={device} preset={args.preset} n_train={len(data.train)} batch={cfg.batch_size}")
    for k, v in med.items():
        print(f"  {k:>10}: {v * 1000:8.1f} ms/epoch (median of {args.repeats})")
    print(f"  ratio dataloader/index = {med['dataloader'] / med['index']:.2f}")


if __name__ == "__main__":
    main()
