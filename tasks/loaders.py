"""Data loaders: pinned host memory for GPU copies, and sharded streams split by worker.

Pinned (page-locked) host memory lets ``tensor.to("cuda", non_blocking=True)``
overlap the copy with compute. It costs locked RAM and buys nothing without
a GPU, so loaders pin only when the job's device is CUDA and CUDA exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from tasks.shards import ShardReader


def should_pin(device: str) -> bool:
    """Pin host memory only when batches will be copied to a CUDA device."""
    return device.startswith("cuda") and torch.cuda.is_available()


def make_loader(
    dataset: Dataset[Any] | Sequence[Any],
    batch_size: int,
    device: str,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    workers: int = 0,
) -> DataLoader[Any]:
    """A loader in dataset order, pinned when useful (see :func:`should_pin`)."""
    return DataLoader(
        dataset,  # type: ignore[arg-type]  # any sequence works as a map-style dataset
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=should_pin(device),
    )


def to_device(batch: Any, device: str) -> Any:
    """Tensors of a (nested) batch on ``device``; non-blocking, which pays off when pinned."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


class ShardStream(IterableDataset[tuple[str, np.ndarray, str]]):
    """(key, audio, label) of one rank's shards, split again among data-loader workers.

    Rank ``r`` of ``world_size`` with ``W`` workers reads part ``r·W + w`` of
    ``world_size·W``: every shard is read by exactly one worker of one rank.
    """

    def __init__(
        self, root: Path, rank: int = 0, world_size: int = 1, order: str = "shard"
    ) -> None:
        self.root, self.rank, self.world_size, self.order = Path(root), rank, world_size, order

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, str]]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        with ShardReader(self.root) as reader:
            part = self.rank * workers + worker
            for entry, audio in reader.iterate(self.order, part, self.world_size * workers):
                yield entry.key, audio, entry.label
