"""Best-of: which configuration of a group of finished jobs wins (pure).

A ``select:`` phase and ``jobdb best`` both call :func:`pick_best`, so the
winner a child runs with is the winner a user is shown. Candidates are the
distinct values of ``keys`` among the jobs; each candidate's score is the
jobs' ``metric`` aggregated (e.g. the mean over folds); ties go to the
candidate that sorts first, so the choice is deterministic.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobdb.errors import BadInput

AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "mean": statistics.fmean,
    "median": statistics.median,
    "min": min,
    "max": max,
}


@dataclass(frozen=True)
class Finished:
    """One finished job as best-of sees it: id, the parameters it ran with, its result."""

    job_id: int
    params: Mapping[str, Any]
    result: Mapping[str, Any] | None


@dataclass(frozen=True)
class Candidate:
    """One configuration (values of the select keys) and its aggregated score."""

    values: dict[str, Any]
    score: float
    job_ids: tuple[int, ...]


@dataclass(frozen=True)
class Choice:
    """The winner and every candidate it was chosen among (best first)."""

    winner: Candidate
    ranking: tuple[Candidate, ...]

    def describe(self, metric: str, aggregate: str | None) -> str:
        """One line for logs: what won, with which score, among how many."""
        how = f"{aggregate} {metric}" if aggregate else metric
        shown = " ".join(f"{k}={json.dumps(v)}" for k, v in self.winner.values.items())
        return (
            f"selected {shown or '(no keys)'}: {how} = {self.winner.score:.6g} over "
            f"{len(self.winner.job_ids)} job(s), best of {len(self.ranking)} candidate(s)"
        )


def metric_value(result: Mapping[str, Any] | None, metric: str) -> Any:
    """``metric`` from a result: the key itself, else a dotted path into nested mappings."""
    if result is None:
        return None
    if metric in result:
        return result[metric]
    node: Any = result
    for part in metric.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def pick_best(
    jobs: Sequence[Finished],
    *,
    metric: str,
    mode: str,
    keys: Sequence[str],
    aggregate: str | None = None,
) -> Choice:
    """The best configuration among ``jobs`` by ``metric`` (``mode`` min or max).

    Without ``aggregate`` each candidate must be a single job (a candidate
    with several jobs is averaged, like ``mean``, rather than picked
    arbitrarily). A job without a numeric ``metric`` is an error naming it:
    silently skipping it could crown the wrong winner.
    """
    if mode not in ("min", "max"):
        raise BadInput(f"best-of mode {mode!r}: expected min or max")
    combine = AGGREGATES.get(aggregate or "mean")
    if combine is None:
        raise BadInput(f"aggregate {aggregate!r}: expected one of {', '.join(AGGREGATES)}")
    if not jobs:
        raise BadInput("best-of over no finished jobs")
    groups: dict[str, tuple[dict[str, Any], list[Finished]]] = {}
    for job in jobs:
        values = {key: job.params.get(key) for key in keys}
        groups.setdefault(_key(values), (values, []))[1].append(job)
    ranking = sorted(
        (_score(values, members, metric, combine) for _, (values, members) in groups.items()),
        key=lambda c: (-c.score if mode == "max" else c.score, _key(c.values)),
    )
    return Choice(ranking[0], tuple(ranking))


def _score(
    values: dict[str, Any],
    members: list[Finished],
    metric: str,
    combine: Callable[[list[float]], float],
) -> Candidate:
    scores = []
    for job in members:
        value = metric_value(job.result, metric)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise BadInput(
                f"job {job.job_id} has no numeric {metric!r} in its result "
                f"(got {json.dumps(value)})",
                hint="best-of needs the metric in every finished job's result",
            )
        scores.append(float(value))
    return Candidate(values, combine(scores), tuple(job.job_id for job in members))


def _key(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)
