"""Stable seed derivation. Seeds come from ``numpy.random.SeedSequence`` over integers, with names mapped
through ``zlib.crc32``; never Python's ``hash()``, which is salted per process."""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch


def stable_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends only on ``parts`` (ints and strings), identical across processes and hosts."""
    words = [zlib.crc32(p.encode("utf-8")) if isinstance(p, str) else int(p) & 0xFFFFFFFF for p in parts]
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def seed_everything(seed: int) -> None:
    """Seed the global RNGs of torch, numpy and random. Library code never draws from them; this only guards
    third-party code (e.g. weight initialisation inside torch.nn) so that a cell is reproducible."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
