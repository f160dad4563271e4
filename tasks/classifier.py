"""The keyword classifier scored by the selection benchmark, and macro F1.

Like seed 004's ``eval.py``, the classifier is deliberately simple (a
multinomial logistic regression on standardised embeddings, full-batch
gradient descent with L2): the benchmark measures the *training data*, so
the model must not be clever enough to hide a bad selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Softmax:
    """A fitted classifier: standardisation, weights, and the class of each output."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    classes: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        logits = ((x - self.mean) / self.std) @ self.weights + self.bias
        return np.asarray(self.classes[logits.argmax(1)])

    def save(self, path: Path) -> None:
        np.savez(
            path,
            mean=self.mean,
            std=self.std,
            weights=self.weights,
            bias=self.bias,
            classes=self.classes,
        )

    @classmethod
    def load(cls, path: Path) -> Softmax:
        with np.load(path) as f:
            return cls(f["mean"], f["std"], f["weights"], f["bias"], f["classes"])


def fit_softmax(
    x: np.ndarray, y: np.ndarray, iterations: int = 300, lr: float = 0.5, l2: float = 1e-3
) -> Softmax:
    """Logistic regression over the classes present in ``y``."""
    classes = np.unique(y)
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    onehot = (y[:, None] == classes[None]).astype(np.float64)
    w = np.zeros((x.shape[1], len(classes)))
    b = np.zeros(len(classes))
    for _ in range(iterations):
        logits = z @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) / len(z)
        w -= lr * (z.T @ grad + l2 * w)
        b -= lr * grad.sum(0)
    return Softmax(mean, std, w, b, classes)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The unweighted mean over classes (those in either array) of F1; 0 for a class never hit."""
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = float(np.sum((y_pred == c) & (y_true == c)))
        fp = float(np.sum((y_pred == c) & (y_true != c)))
        fn = float(np.sum((y_pred != c) & (y_true == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """A fold number per sample; each class spread evenly over the folds."""
    r = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=np.int64)
    for offset, c in enumerate(np.unique(y)):
        members = r.permutation(np.flatnonzero(y == c))
        # Each class starts at another fold, so small classes do not all land in fold 0.
        folds[members] = (np.arange(len(members)) + offset) % n_folds
    return folds
