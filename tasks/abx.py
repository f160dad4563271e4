"""ABX phone discrimination with DTW frame distances (the Zero Resource Speech metric).

A triplet (A, B, X): A and X are the same phone, B another one. The
representation discriminates them when X is closer to A than to B, each
distance being the DTW-aligned mean frame distance between two segments.
The error rate is the fraction of triplets it gets wrong (ties count half):
0 is perfect, 0.5 is chance. *Across-speaker* triplets take X from another
voice than A and B, so a representation that tracks the speaker instead of
the phone is penalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    """One phone occurrence: which phone, said by whom, and its frames (T × D)."""

    phone: str
    speaker: str
    frames: np.ndarray


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 − cos between every frame of ``a`` and every frame of ``b`` (in [0, 2])."""
    an = a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-9)
    bn = b / (np.linalg.norm(b, axis=1, keepdims=True) + 1e-9)
    return np.asarray(1.0 - an @ bn.T)


def dtw(cost: np.ndarray) -> float:
    """Cost of the best monotonic alignment through a cost matrix, over the path length.

    One row at a time: the diagonal and vertical moves are vectorised, the
    horizontal move (within the row) is a running minimum.
    """
    rows, cols = cost.shape
    acc = np.full(cols, np.inf)
    steps = np.zeros(cols)
    for i in range(rows):
        prev, prev_steps = acc, steps
        diag = np.concatenate([[0.0 if i == 0 else np.inf], prev[:-1]])
        diag_steps = np.concatenate([[0.0], prev_steps[:-1]])
        take_diag = diag <= prev
        acc = cost[i] + np.where(take_diag, diag, prev)
        steps = np.where(take_diag, diag_steps, prev_steps) + 1
        for j in range(1, cols):
            if acc[j - 1] + cost[i, j] < acc[j]:
                acc[j], steps[j] = acc[j - 1] + cost[i, j], steps[j - 1] + 1
    return float(acc[-1] / steps[-1])


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return dtw(cosine_distances(a, b))


def triplets(
    segments: Sequence[Segment], n: int, seed: int, across_speakers: bool = True
) -> list[tuple[int, int, int]]:
    """``n`` random (A, B, X) index triplets.

    phone(A) = phone(X) ≠ phone(B) and speaker(A) = speaker(B).

    Across speakers, X's speaker differs from A's; within, it is A's (but X ≠ A).
    """
    r = np.random.default_rng(seed)
    by_key: dict[tuple[str, str], list[int]] = {}
    for i, s in enumerate(segments):
        by_key.setdefault((s.phone, s.speaker), []).append(i)
    keys = list(by_key)
    out: list[tuple[int, int, int]] = []
    for _ in range(n * 20):
        if len(out) == n:
            break
        phone, speaker = keys[r.integers(len(keys))]
        others = [k for k in keys if k[1] == speaker and k[0] != phone]
        x_keys = [k for k in keys if k[0] == phone and (k[1] != speaker) == across_speakers]
        if not others or not x_keys:
            continue
        a = int(r.choice(by_key[(phone, speaker)]))
        b = int(r.choice(by_key[others[r.integers(len(others))]]))
        xs = [i for i in by_key[x_keys[r.integers(len(x_keys))]] if i != a]
        if xs:
            out.append((a, b, int(r.choice(xs))))
    return out


def abx_error(segments: Sequence[Segment], items: Sequence[tuple[int, int, int]]) -> float:
    """The fraction of triplets where X is closer to B than to A (ties count half)."""
    if not items:
        raise ValueError(
            "no ABX triplets: need two phones per speaker and each phone from two speakers"
        )
    scores = []
    for a, b, x in items:
        d_ax = distance(segments[a].frames, segments[x].frames)
        d_bx = distance(segments[b].frames, segments[x].frames)
        scores.append(1.0 if d_bx < d_ax else 0.5 if d_bx == d_ax else 0.0)
    return float(np.mean(scores))
