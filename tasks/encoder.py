"""A small convolutional encoder whose penultimate layer gives keyword embeddings.

Seed 004 ships embeddings from a large keyword classifier; here a small one
is trained on words that are *not* the benchmark's keywords (so the
embedding has to generalise to them), and its pooled projection is the
embedding the selection strategies and the classifier work on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tasks.loaders import make_loader, to_device
from tasks.training import Checkpointed, FitResult, TrainConfig, fit, pad_batch


class Encoder(nn.Module):
    """Three 1-D convolutions over frames, masked mean+max pooling, a projection, a word head."""

    def __init__(
        self,
        n_in: int,
        n_classes: int,
        channels: int = 64,
        dim: int = 64,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        widths = [(n_in, 1), (channels, 2), (channels, 4)]
        self.blocks = nn.Sequential(
            *[
                Checkpointed(
                    nn.Sequential(
                        nn.Conv1d(c_in, channels, 5, padding=2 * d, dilation=d), nn.ReLU()
                    ),
                    enabled=checkpointing,
                )
                for c_in, d in widths
            ]
        )
        self.project = nn.Linear(2 * channels, dim)
        self.head = nn.Linear(dim, n_classes)

    def embed(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, frames, features) padded, with true lengths → (batch, dim) embeddings."""
        h = self.blocks(frames.transpose(1, 2))  # (batch, channels, frames)
        mask = (torch.arange(h.shape[2], device=h.device)[None] < lengths[:, None]).unsqueeze(1)
        mean = (h * mask).sum(2) / lengths[:, None].clamp_min(1)
        peak = h.masked_fill(~mask, float("-inf")).amax(2)
        out: torch.Tensor = self.project(torch.cat([mean, peak], 1))
        return out

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(torch.relu(self.embed(frames, lengths)))
        return logits


def train_encoder(
    feats: Sequence[torch.Tensor],
    labels: np.ndarray,
    cfg: TrainConfig,
    device: str,
    checkpoint_dir: Path | None = None,
    checkpointing: bool = False,
    dim: int = 64,
) -> tuple[Encoder, FitResult]:
    """Train the encoder to tell the pre-training words apart."""
    torch.manual_seed(cfg.seed)
    model = Encoder(feats[0].shape[1], int(labels.max()) + 1, dim=dim, checkpointing=checkpointing)
    targets = torch.as_tensor(labels)

    def loss_fn(m: nn.Module, idx: np.ndarray) -> torch.Tensor:
        frames, lengths = pad_batch([feats[i] for i in idx])
        logits = m(frames.to(device), lengths.to(device))
        return nn.functional.cross_entropy(logits.float(), targets[idx].to(device))

    result = fit(model, loss_fn, len(feats), cfg, device, checkpoint_dir)
    return model.eval(), result


def _collate(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return pad_batch(items)


@torch.no_grad()
def embed_all(
    model: Encoder, feats: Sequence[torch.Tensor], device: str, batch_size: int = 64
) -> np.ndarray:
    """Embeddings of every clip, in order (batches copied through a pinned loader on CUDA)."""
    model.to(device).eval()
    loader = make_loader(list(feats), batch_size, device, collate_fn=_collate)
    out = [model.embed(*to_device(batch, device)).float().cpu() for batch in loader]
    return torch.cat(out).numpy()


@torch.no_grad()
def accuracy(
    model: Encoder, feats: Sequence[torch.Tensor], labels: np.ndarray, device: str
) -> float:
    model.to(device).eval()
    loader = make_loader(list(feats), 64, device, collate_fn=_collate)
    preds = torch.cat([model(*to_device(b, device)).argmax(1).cpu() for b in loader]).numpy()
    return float(np.mean(preds == labels))
