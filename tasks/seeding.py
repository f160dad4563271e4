"""One seed for every random number generator a job touches.

A retried or resumed job must draw the same numbers as the first attempt, so
tasks derive all randomness from ``params["seed"]`` through these helpers and
never from global state set elsewhere.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask torch for deterministic kernels.

    ``warn_only`` keeps an op without a deterministic kernel usable (it
    warns instead of raising): determinism is a goal, not a crash.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this before its first call to be reproducible.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def rng(*keys: int) -> np.random.Generator:
    """A NumPy generator for one purpose, e.g. ``rng(seed, clip_index)``.

    Keyed generators make item ``i`` the same whatever order (or process)
    generates it, which sharded, parallel data generation relies on.
    """
    return np.random.default_rng(list(keys))


def torch_generator(seed: int, device: str = "cpu") -> torch.Generator:
    """A torch generator of its own, so model code cannot disturb the data order."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
