"""Best-of: hand-computed winners over folds, modes, ties and missing metrics."""

from __future__ import annotations

import pytest

from jobdb.errors import BadInput
from jobdb.runtime.best import Finished, metric_value, pick_best


def _folds() -> list[Finished]:
    # lr=0.1: acc 0.8, 0.9 → mean 0.85; lr=0.01: 0.95, 0.7 → mean 0.825, max 0.95
    rows = [(0.1, 0, 0.8), (0.1, 1, 0.9), (0.01, 0, 0.95), (0.01, 1, 0.7)]
    return [
        Finished(i, {"lr": lr, "fold": fold}, {"val": {"acc": acc}})
        for i, (lr, fold, acc) in enumerate(rows)
    ]


def test_mean_over_folds_picks_the_best_configuration() -> None:
    choice = pick_best(_folds(), metric="val.acc", mode="max", keys=["lr"], aggregate="mean")
    assert choice.winner.values == {"lr": 0.1}
    assert choice.winner.score == pytest.approx(0.85)
    assert choice.winner.job_ids == (0, 1)
    assert [c.values["lr"] for c in choice.ranking] == [0.1, 0.01]


def test_the_aggregate_changes_the_winner() -> None:
    choice = pick_best(_folds(), metric="val.acc", mode="max", keys=["lr"], aggregate="max")
    assert choice.winner.values == {"lr": 0.01}


def test_min_mode_and_single_jobs() -> None:
    jobs = [Finished(1, {"lr": 1}, {"loss": 3}), Finished(2, {"lr": 2}, {"loss": 1.5})]
    assert pick_best(jobs, metric="loss", mode="min", keys=["lr"]).winner.values == {"lr": 2}


def test_ties_go_to_the_candidate_that_sorts_first() -> None:
    jobs = [Finished(1, {"lr": 2}, {"m": 1}), Finished(2, {"lr": 1}, {"m": 1})]
    assert pick_best(jobs, metric="m", mode="max", keys=["lr"]).winner.values == {"lr": 1}


def test_a_missing_metric_names_the_job() -> None:
    jobs = [Finished(1, {"lr": 2}, {"m": 1}), Finished(7, {"lr": 1}, {"other": 1})]
    with pytest.raises(BadInput, match="job 7 has no numeric 'm'"):
        pick_best(jobs, metric="m", mode="max", keys=["lr"])


def test_a_flat_key_with_a_dot_wins_over_the_nested_path() -> None:
    assert metric_value({"val.acc": 1, "val": {"acc": 2}}, "val.acc") == 1
    assert metric_value({"val": {"acc": 2}}, "val.acc") == 2
    assert metric_value(None, "x") is None
