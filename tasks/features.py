"""Frame features with torchaudio (MFCC or log-mel), batched on the job's device.

Clips of different lengths are padded into one ``(batch, samples)`` tensor so
the STFT and filterbank run once per batch instead of once per clip; sorting
by length first keeps the padding small. Each clip's own frames are cut back
out afterwards and normalised per utterance (mean and variance per
coefficient), which removes most of the speaker's and channel's offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio

from tasks.shards import ShardReader
from tasks.synth import SAMPLE_RATE


@dataclass(frozen=True)
class FeatureConfig:
    """Which features: ``mfcc`` (``n_mfcc`` coefficients) or ``logmel`` (``n_mels`` bands)."""

    kind: str = "mfcc"
    n_mels: int = 40
    n_mfcc: int = 13
    n_fft: int = 400
    hop: int = 160
    cmvn: bool = True

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> FeatureConfig:
        """The config from a job's parameters (``features.kind`` etc. or plain names)."""
        fields = cls.__dataclass_fields__
        found = {k.removeprefix("features."): v for k, v in params.items()}
        return cls(**{k: v for k, v in found.items() if k in fields})

    @property
    def dims(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels


def make_transform(cfg: FeatureConfig, device: str) -> torch.nn.Module:
    """The torchaudio transform for ``cfg``, on ``device``."""
    mel = {"n_fft": cfg.n_fft, "hop_length": cfg.hop, "n_mels": cfg.n_mels}
    if cfg.kind == "mfcc":
        module: torch.nn.Module = torchaudio.transforms.MFCC(SAMPLE_RATE, cfg.n_mfcc, melkwargs=mel)
    elif cfg.kind == "logmel":
        module = torch.nn.Sequential(
            torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, **mel),
            torchaudio.transforms.AmplitudeToDB(top_db=80.0),
        )
    else:
        raise ValueError(f"feature kind {cfg.kind!r}; expected mfcc or logmel")
    return module.to(device)


def frame_count(samples: int, hop: int) -> int:
    """Frames of a centred STFT over ``samples`` (torchaudio's default ``center=True``)."""
    return samples // hop + 1


@torch.no_grad()
def batch_features(
    transform: torch.nn.Module, audios: Sequence[np.ndarray], cfg: FeatureConfig, device: str
) -> list[torch.Tensor]:
    """One padded forward pass over ``audios``; each clip's ``(frames, dims)`` on the CPU."""
    longest = max(a.size for a in audios)
    batch = torch.zeros(len(audios), longest)
    for i, audio in enumerate(audios):
        batch[i, : audio.size] = torch.from_numpy(audio)
    out = transform(batch.to(device)).transpose(1, 2).float().cpu()  # (batch, frames, dims)
    feats = [out[i, : frame_count(a.size, cfg.hop)] for i, a in enumerate(audios)]
    return [normalise(f) for f in feats] if cfg.cmvn else feats


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per coefficient over the utterance."""
    return (frames - frames.mean(0)) / (frames.std(0, unbiased=False) + 1e-5)


def extract(
    audios: Sequence[np.ndarray], cfg: FeatureConfig, device: str = "cpu", batch_size: int = 64
) -> list[torch.Tensor]:
    """Features of every clip, in the input order, computed in length-sorted batches."""
    transform = make_transform(cfg, device)
    order = sorted(range(len(audios)), key=lambda i: audios[i].size)
    out: list[torch.Tensor | None] = [None] * len(audios)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, feats in zip(
            chunk, batch_features(transform, [audios[i] for i in chunk], cfg, device), strict=True
        ):
            out[i] = feats
    return [f for f in out if f is not None]


def extract_shards(
    reader: ShardReader,
    out_dir: Path,
    cfg: FeatureConfig,
    device: str = "cpu",
    batch_size: int = 64,
    limit: int | None = None,
) -> dict[str, int]:
    """Features of every clip, saved per shard as ``<shard>.pt`` ({key: frames}); clips per shard.

    ``limit`` keeps the first clips only (a smoke run).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for shard in reader.shards:
        entries = [e for e in reader.entries if e.shard == shard][:limit]
        if not entries:
            continue
        feats = extract([reader.audio(e.key) for e in entries], cfg, device, batch_size)
        torch.save(
            {e.key: f for e, f in zip(entries, feats, strict=True)},
            out_dir / f"{Path(shard).stem}.pt",
        )
        counts[shard] = len(entries)
        if limit is not None:
            break
    torch.save(asdict(cfg), out_dir / "config.pt")
    return counts


def load_features(feature_dir: Path) -> dict[str, torch.Tensor]:
    """Every ``<shard>.pt`` of a folder written by :func:`extract_shards`, merged."""
    merged: dict[str, torch.Tensor] = {}
    for path in sorted(feature_dir.glob("*.pt")):
        if path.name != "config.pt":
            merged.update(torch.load(path, weights_only=True))
    return merged
