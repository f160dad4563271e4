"""The training loop every task shares: precision, accumulation, checkpoints (seed 003).

What fits a heavy model into a small GPU, in one place:

* **mixed precision**: fp16 autocast with a ``GradScaler`` on CUDA (fp16
  gradients underflow without loss scaling), bf16 autocast on CPU (bf16 has
  fp32's exponent range, so no scaler);
* **gradient accumulation**: ``accumulation_steps`` micro-batches of
  ``batch_size`` samples per optimizer step. The samples a step sees depend
  only on the step and the *effective* batch (``batch_size ×
  accumulation_steps``), never on how it is split, so a retry after an
  out-of-memory with the batch halved and the accumulation doubled trains
  on the same data in the same order;
* **gradient checkpointing**: :class:`Checkpointed` recomputes a block's
  activations in backward instead of keeping them;
* **checkpoint/resume**: every ``checkpoint_every`` steps to the job's
  checkpoint folder; the next attempt resumes from the saved step.

Out-of-memory errors are deliberately not caught: the traceback reaches
stderr with torch's "CUDA out of memory" message, which jobdb records as the
failure reason ``oom`` (and a phase's ``retry: {on: [oom], halve: …}`` acts on).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from tasks.checkpoint import Checkpointer

#: ``loss_fn(model, sample_indices) -> scalar loss`` (the mean over those samples).
LossFn = Callable[[torch.nn.Module, np.ndarray], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """How to train; read from a job's parameters by :meth:`from_params`."""

    steps: int = 100
    batch_size: int = 32
    accumulation_steps: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    mixed_precision: bool = False
    grad_clip: float = 1.0
    checkpoint_every: int = 0
    seed: int = 0

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.accumulation_steps

    @classmethod
    def from_params(
        cls, params: dict[str, Any], smoke: bool = False, **defaults: Any
    ) -> TrainConfig:
        """Task defaults overridden by the job's parameters; a smoke run takes one small step."""
        names = {f.name for f in fields(cls)}
        values = {**defaults, **{k: v for k, v in params.items() if k in names}}
        if smoke:
            values.update(steps=1, batch_size=min(int(values.get("batch_size", 32)), 4))
            values.update(accumulation_steps=1, checkpoint_every=0)
        return cls(**values)


@dataclass
class FitResult:
    """What a run did: where it started (0, or the resumed step), and its losses."""

    start_step: int
    steps_run: int
    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return float(np.mean(tail)) if tail else math.nan


def device_type(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def autocast(device: str, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CPU, fp16 on CUDA; a no-op when not ``enabled``."""
    kind = device_type(device)
    dtype = torch.float16 if kind == "cuda" else torch.bfloat16
    return torch.autocast(device_type=kind, dtype=dtype, enabled=enabled)


def make_scaler(device: str, mixed_precision: bool) -> torch.amp.GradScaler:
    """A loss scaler that only scales for fp16 on CUDA (disabled, it passes values through)."""
    return torch.amp.GradScaler("cuda", enabled=mixed_precision and device_type(device) == "cuda")


def stream_indices(n: int, seed: int, start: int, count: int) -> np.ndarray:
    """Positions ``start … start+count-1`` of an endless stream of epochs over ``n`` samples.

    Epoch ``e`` is the permutation of ``rng(seed, e)``; a position fixes its
    sample whatever the batch size, which is what makes accumulation splits
    and resumed runs see the same data.
    """
    positions = np.arange(start, start + count)
    epochs = positions // n
    out = np.empty(count, dtype=np.int64)
    for epoch in np.unique(epochs):
        perm = np.random.default_rng([seed, int(epoch)]).permutation(n)
        mask = epochs == epoch
        out[mask] = perm[positions[mask] % n]
    return out


class Checkpointed(torch.nn.Module):
    """Gradient checkpointing of one block: activations are recomputed in backward.

    torch restores the RNG state for the recomputation, so dropout inside is
    fine; a BatchNorm inside would update its running statistics twice, so
    keep normalisation layers with running stats out of checkpointed blocks.
    """

    def __init__(self, block: torch.nn.Module, enabled: bool = True) -> None:
        super().__init__()
        self.block = block
        self.enabled = enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.enabled and self.training and torch.is_grad_enabled():
            out = checkpoint(self.block, x, use_reentrant=False)
            assert isinstance(out, torch.Tensor)
            return out
        result: torch.Tensor = self.block(x)
        return result


def fit(
    model: torch.nn.Module,
    loss_fn: LossFn,
    n_samples: int,
    cfg: TrainConfig,
    device: str = "cpu",
    checkpoint_dir: Path | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train ``model`` for ``cfg.steps`` optimizer steps over samples ``0 … n_samples-1``.

    With ``checkpoint_dir`` and ``cfg.checkpoint_every``, the state is saved
    every that many steps and a saved state is resumed from.
    ``on_step(step, loss)`` is called after each optimizer step.
    """
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = make_scaler(device, cfg.mixed_precision)
    saver = Checkpointer(checkpoint_dir) if checkpoint_dir and cfg.checkpoint_every > 0 else None
    start = saver.restore(model, optimizer, scaler) if saver else 0
    result = FitResult(start_step=start, steps_run=0)
    for step in range(start, cfg.steps):
        loss = _step(model, loss_fn, n_samples, cfg, device, optimizer, scaler, step)
        result.losses.append(loss)
        result.steps_run += 1
        if saver and (step + 1) % cfg.checkpoint_every == 0:
            saver.save(step + 1, model, optimizer, scaler)
        if on_step is not None:
            on_step(step + 1, loss)
    return result


def _step(
    model: torch.nn.Module,
    loss_fn: LossFn,
    n_samples: int,
    cfg: TrainConfig,
    device: str,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    step: int,
) -> float:
    """One optimizer step over ``accumulation_steps`` micro-batches; the step's mean loss."""
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for micro in range(cfg.accumulation_steps):
        start = step * cfg.effective_batch + micro * cfg.batch_size
        indices = stream_indices(n_samples, cfg.seed, start, cfg.batch_size)
        with autocast(device, cfg.mixed_precision):
            loss = loss_fn(model, indices)
        scaler.scale(loss.float() / cfg.accumulation_steps).backward()
        total += float(loss.detach()) / cfg.accumulation_steps
    if cfg.grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return total


def pad_batch(
    seqs: Sequence[torch.Tensor], value: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-length ``(frames, …)`` tensors → a padded batch and their lengths."""
    lengths = torch.tensor([s.shape[0] for s in seqs])
    return torch.nn.utils.rnn.pad_sequence(
        list(seqs), batch_first=True, padding_value=value
    ), lengths
