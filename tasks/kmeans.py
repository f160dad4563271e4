"""k-means over feature frames in torch, so it runs on the GPU when the job has one.

Used by InfQuery's ``quantize``: the centroids are a model's discrete units,
and a frame's unit is its nearest centroid. Initialisation is k-means++ (a
seeded generator, so the same frames give the same units), then Lloyd
iterations in chunks so a million frames never build a million × K matrix
at once. An empty cluster is re-seeded with the frame farthest from its
centroid, so K units stay K units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tasks.seeding import torch_generator

CHUNK = 65_536


@dataclass
class KMeans:
    """Fitted centroids and the inertia (mean squared distance to the nearest one) per iteration."""

    centroids: torch.Tensor
    history: list[float]

    def assign(self, frames: torch.Tensor) -> torch.Tensor:
        """The index of the nearest centroid of each frame."""
        return nearest(frames.to(self.centroids.device), self.centroids)[0].cpu()

    def inertia(self, frames: torch.Tensor) -> float:
        return float(nearest(frames.to(self.centroids.device), self.centroids)[1].mean())


def nearest(frames: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index, squared distance) of each frame's nearest centroid, chunk by chunk."""
    indices, dists = [], []
    c_norm = (centroids**2).sum(1)
    for chunk in frames.split(CHUNK):
        d = (chunk**2).sum(1, keepdim=True) - 2 * chunk @ centroids.T + c_norm
        best = d.min(1)
        indices.append(best.indices)
        dists.append(best.values.clamp_min(0))
    return torch.cat(indices), torch.cat(dists)


def kmeans_pp(frames: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++: each new centroid drawn with probability ∝ squared distance to the chosen ones."""
    first = torch.randint(frames.shape[0], (1,), generator=gen, device=gen.device)
    centroids = frames[first.to(frames.device)]
    dist = ((frames - centroids[0]) ** 2).sum(1)
    for _ in range(1, k):
        weights = dist / dist.sum() if dist.sum() > 0 else torch.ones_like(dist) / dist.numel()
        pick = torch.multinomial(weights.to(gen.device), 1, generator=gen).to(frames.device)
        centroids = torch.cat([centroids, frames[pick]])
        dist = torch.minimum(dist, ((frames - frames[pick]) ** 2).sum(1))
    return centroids


def fit_kmeans(
    frames: torch.Tensor, k: int, iterations: int = 20, seed: int = 0, device: str = "cpu"
) -> KMeans:
    """Cluster ``frames`` (N × D) into ``k`` centroids with Lloyd's algorithm."""
    if frames.shape[0] < k:
        raise ValueError(f"{frames.shape[0]} frames cannot make {k} clusters")
    frames = frames.to(device, torch.float32)
    gen = torch_generator(seed, "cuda" if frames.is_cuda else "cpu")
    centroids = kmeans_pp(frames, k, gen)
    history = []
    for _ in range(iterations):
        labels, dist = nearest(frames, centroids)
        history.append(float(dist.mean()))
        centroids = _update(frames, labels, dist, centroids)
        if len(history) > 1 and history[-2] - history[-1] <= 1e-6 * history[-2]:
            break
    return KMeans(centroids, history)


def _update(
    frames: torch.Tensor, labels: torch.Tensor, dist: torch.Tensor, old: torch.Tensor
) -> torch.Tensor:
    k = old.shape[0]
    sums = torch.zeros_like(old).index_add_(0, labels, frames)
    counts = torch.bincount(labels, minlength=k).to(frames.dtype)
    centroids = sums / counts.clamp_min(1).unsqueeze(1)
    empty = (counts == 0).nonzero().flatten()
    if empty.numel():
        far = dist.topk(empty.numel()).indices
        centroids[empty] = frames[far]
    return centroids
