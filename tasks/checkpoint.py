"""Saving a training run every N steps and resuming it on the next attempt.

A job's ``ctx.checkpoint_dir`` is the same folder on every attempt, so a job
killed at step 730 with a checkpoint at step 700 resumes at 700, not 0. The
checkpoint holds everything that decides what happens next: model,
optimizer, gradient scaler, the step, and the random number generators
(dropout draws), so a resumed run takes the same path an uninterrupted one
would have. It is written to a temporary file and renamed into place: a kill
during the write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "train.pt"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """``save`` the run's state atomically; ``restore`` it and say from which step to go on."""

    def __init__(self, folder: Path, name: str = CHECKPOINT_FILE) -> None:
        self.path = Path(folder) / name

    def exists(self) -> bool:
        return self.path.is_file()

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        state = {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
            "extra": extra or {},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def restore(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None = None,
    ) -> int:
        """Load the saved state into the given objects; the step to resume from (0: none saved)."""
        if not self.exists():
            return 0
        # weights_only=False: the file is our own, and RNG states are tensors in a dict.
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        return int(state["step"])
