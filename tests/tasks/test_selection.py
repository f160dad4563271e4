"""Selection strategies under a budget, the classifier, macro F1 and folds."""

from __future__ import annotations

import numpy as np
import pytest

from tasks import classifier, selection


def pool(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    y = np.repeat(np.array(["a", "b", "c", "_unknown"]), [10, 10, 10, 50])
    centers = {c: r.normal(size=8) * 4 for c in np.unique(y)}
    return np.stack([centers[c] + r.normal(size=8) for c in y]), y


@pytest.mark.parametrize("strategy", sorted(selection.STRATEGIES))
@pytest.mark.parametrize("budget", [1, 7, 24, 80])
def test_every_strategy_returns_exactly_the_budget(strategy: str, budget: int) -> None:
    x, y = pool()
    chosen = selection.select(strategy, x, y, budget, seed=3)
    assert len(chosen) == budget == len(set(chosen.tolist()))
    assert chosen.min() >= 0 and chosen.max() < len(x)
    assert np.array_equal(chosen, selection.select(strategy, x, y, budget, seed=3))


def test_balanced_takes_the_same_number_per_class() -> None:
    x, y = pool()
    for budget in (8, 13, 40):
        counts = np.unique(y[selection.select("balanced", x, y, budget, 0)], return_counts=True)[1]
        assert counts.max() - counts.min() <= 1
    # A class that runs out (10 of "a") leaves its share to the others.
    counts = dict(
        zip(
            *np.unique(y[selection.select("balanced", x, y, 60, 0)], return_counts=True),
            strict=True,
        )
    )
    assert counts == {"a": 10, "b": 10, "c": 10, "_unknown": 30}


def test_kcenter_and_cluster_cover_every_class_where_random_may_not() -> None:
    x, y = pool()
    for strategy in ("kcenter", "cluster"):
        assert set(y[selection.select(strategy, x, y, 6, 0)]) == set(y)


def test_a_budget_beyond_the_pool_is_an_error() -> None:
    x, y = pool()
    with pytest.raises(ValueError, match="budget 81"):
        selection.select("random", x, y, 81, 0)
    with pytest.raises(ValueError, match="unknown strategy"):
        selection.select("best", x, y, 5, 0)


def test_macro_f1() -> None:
    y = np.array(["a", "a", "b", "b"])
    assert classifier.macro_f1(y, y) == 1.0
    assert classifier.macro_f1(y, np.array(["a", "a", "a", "a"])) == pytest.approx((2 / 3 + 0) / 2)


def test_classifier_on_separable_embeddings_scores_high() -> None:
    x, y = pool()
    folds = classifier.stratified_folds(y, 5, seed=0)
    assert all(np.sum((folds == k) & (y == "a")) == 2 for k in range(5))
    model = classifier.fit_softmax(x[folds != 0], y[folds != 0])
    assert classifier.macro_f1(y[folds == 0], model.predict(x[folds == 0])) > 0.9
