"""What ``jobdb results`` and ``jobdb best`` compute, as plain data (no rendering).

``best`` hands the jobs to :func:`jobdb.runtime.best.pick_best`, the function
a ``select:`` phase calls when its child starts, so the winner shown is the
winner a child would run with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from jobdb.analysis import fetch, table
from jobdb.analysis.fetch import JobRow, Selection
from jobdb.analysis.table import ResultTable
from jobdb.errors import BadInput
from jobdb.runtime.best import Choice, Finished, metric_value, pick_best

Progress = Callable[[int], None]


def results(
    conn: Connection,
    selection: Selection,
    *,
    group_by: Sequence[str] = (),
    metrics: Sequence[str] = (),
    on_batch: Progress | None = None,
) -> ResultTable:
    """The table of ``jobdb results``: per job, or per group with mean ± std computed in SQL."""
    scope = fetch.resolve(conn, selection)
    if group_by:
        found = fetch.aggregate(conn, scope, group_by, metrics)
        if not set(metrics) <= {agg.metric for agg in found}:
            found = fetch.aggregate(conn, scope, group_by)  # so the error lists what there is
        return table.grouped(found, group_by, metrics)
    return table.per_job(list(fetch.job_rows(conn, scope, on_batch)), metrics)


def rows(conn: Connection, selection: Selection, on_batch: Progress | None = None) -> list[JobRow]:
    """The selected jobs with their parameters and results."""
    return list(fetch.job_rows(conn, fetch.resolve(conn, selection), on_batch))


@dataclass(frozen=True)
class Best:
    """The winner of ``jobdb best`` and what it was chosen over."""

    choice: Choice
    keys: list[str]
    metric: str
    mode: str
    aggregate: str


def best(
    jobs: Sequence[JobRow],
    *,
    metric: str,
    mode: str,
    keys: Sequence[str] = (),
    aggregate: str = "mean",
) -> Best:
    """The best configuration by ``metric``; without ``keys`` every parameter that varies.

    With keys (e.g. ``lr``) the jobs sharing a value (its folds and seeds)
    form one candidate scored by ``aggregate``.
    """
    if not jobs:
        raise BadInput("no finished jobs match", hint="best-of reads done jobs; see jobdb status")
    if all(metric_value(job.result, metric) is None for job in jobs):
        available = sorted({name for job in jobs for name in table.flatten(job.result)})
        raise BadInput(
            f"no finished job reports the metric {metric!r}",
            hint=f"metrics here: {', '.join(available) or '(none)'}",
        )
    chosen = list(keys) or table.varying_keys(job.params for job in jobs)
    finished = [Finished(job.id, job.params, job.result) for job in jobs]
    choice = pick_best(finished, metric=metric, mode=mode, keys=chosen, aggregate=aggregate)
    return Best(choice, chosen, metric, mode, aggregate)
