"""Training-set selection under a budget (seed 004), on embedding vectors, in NumPy.

Each strategy returns exactly ``budget`` distinct indices into the pool:

* ``random``: a uniform sample, the baseline every other strategy must beat;
* ``balanced``: the same number per class (round robin when a class runs out);
* ``kcenter``: greedy k-center (the coreset of Sener & Savarese): repeatedly
  take the point farthest from everything chosen, which covers the space;
* ``cluster``: k-means with ``budget`` clusters, the point nearest each
  centroid: typical examples of every region rather than outliers.

NumPy, not torch: an experiment runs hundreds of these small jobs, and
importing torch would cost each more than its selection does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Strategy = Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]


def random_subset(x: np.ndarray, y: np.ndarray, budget: int, r: np.random.Generator) -> np.ndarray:
    return np.sort(r.choice(len(x), size=budget, replace=False))


def balanced(x: np.ndarray, y: np.ndarray, budget: int, r: np.random.Generator) -> np.ndarray:
    """Round robin over classes, each in a random order, until the budget is spent."""
    queues = [list(r.permutation(np.flatnonzero(y == c))) for c in np.unique(y)]
    chosen: list[int] = []
    while len(chosen) < budget:
        for queue in queues:
            if queue and len(chosen) < budget:
                chosen.append(int(queue.pop()))
    return np.sort(np.asarray(chosen))


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9))


def kcenter(x: np.ndarray, y: np.ndarray, budget: int, r: np.random.Generator) -> np.ndarray:
    """Greedy k-center on unit-normalised embeddings, from a random first point."""
    z = _unit(x)
    chosen = [int(r.integers(len(z)))]
    dist = np.linalg.norm(z - z[chosen[0]], axis=1)
    for _ in range(budget - 1):
        far = int(np.argmax(dist))
        chosen.append(far)
        dist = np.minimum(dist, np.linalg.norm(z - z[far], axis=1))
    return np.sort(np.asarray(chosen))


def kmeans_np(z: np.ndarray, k: int, r: np.random.Generator, iterations: int = 15) -> np.ndarray:
    """Lloyd's k-means from k-means++ seeds; the centroids (small pools only: N × k distances)."""
    centroids = z[[int(r.integers(len(z)))]]
    for _ in range(1, k):
        d2 = ((z[:, None, :] - centroids[None]) ** 2).sum(-1).min(1)
        p = d2 / d2.sum() if d2.sum() > 0 else None
        centroids = np.vstack([centroids, z[r.choice(len(z), p=p)]])
    for _ in range(iterations):
        labels = ((z[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
        for c in range(k):
            members = z[labels == c]
            if len(members):
                centroids[c] = members.mean(0)
    return np.asarray(centroids)


def cluster(x: np.ndarray, y: np.ndarray, budget: int, r: np.random.Generator) -> np.ndarray:
    """The pool point nearest each of ``budget`` k-means centroids; shortfalls filled at random."""
    z = _unit(x)
    centroids = kmeans_np(z, budget, r)
    d2 = ((z[:, None, :] - centroids[None]) ** 2).sum(-1)
    chosen: dict[int, None] = {}
    for c in np.argsort(d2.min(0)):  # tightest clusters first claim their medoid
        for i in np.argsort(d2[:, c]):
            if int(i) not in chosen:
                chosen[int(i)] = None
                break
    rest = np.setdiff1d(np.arange(len(z)), list(chosen))
    extra = r.choice(rest, size=max(0, budget - len(chosen)), replace=False)
    return np.sort(np.asarray([*chosen, *map(int, extra)]))


STRATEGIES: dict[str, Strategy] = {
    "random": random_subset,
    "balanced": balanced,
    "kcenter": kcenter,
    "cluster": cluster,
}


def select(strategy: str, x: np.ndarray, y: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """``budget`` distinct pool indices chosen by ``strategy`` (sorted)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if not 0 < budget <= len(x):
        raise ValueError(f"budget {budget} must be between 1 and the pool size {len(x)}")
    chosen = STRATEGIES[strategy](x, y, budget, np.random.default_rng(seed))
    assert len(np.unique(chosen)) == budget, (
        f"{strategy} chose {len(np.unique(chosen))} of {budget}"
    )
    return chosen
