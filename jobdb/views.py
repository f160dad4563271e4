"""Read-only views for ``status``, ``list`` and ``show``: plain data, no rendering.

The CLI turns these into Rich tables (``jobdb.cli.render``) or JSON; tests
and scripts can use them directly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, Select, func, select

from jobdb import selectors
from jobdb.errors import NotFound
from jobdb.models import Attempt, Edge, Event, Experiment, Job, Phase
from jobdb.selectors import JobFilter
from jobdb.states import State


@dataclass(frozen=True)
class PhaseStatus:
    """Job counts of one phase of one experiment, per state."""

    experiment: str
    phase: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class JobSummary:
    """One row of ``jobdb list``."""

    id: int
    experiment: str
    phase: str
    state: str
    params: dict[str, Any]
    attempt: int
    max_attempts: int
    priority: int
    result: dict[str, Any] | None
    reason: str | None
    updated_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Relative:
    """A parent or child of a job, as ``show`` lists it."""

    id: int
    phase: str
    state: str


@dataclass
class JobDetail:
    """Everything ``jobdb show JOB`` prints."""

    job: dict[str, Any]
    experiment: str
    phase: str
    parents: list[Relative] = field(default_factory=list)
    children: list[Relative] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def status(conn: Connection, selector: JobFilter | None = None) -> list[PhaseStatus]:
    """Counts per experiment × phase × state, in experiment and phase order.

    Phases with no jobs are listed too, so a freshly created phase shows up.
    """
    selector = selector or JobFilter()
    dialect = conn.dialect.name
    counted = selectors.jobs_joined(Job.phase_id, Job.state, func.count().label("n")).group_by(
        Job.phase_id, Job.state
    )
    counts: dict[int, dict[str, int]] = {}
    for phase_id, state, n in conn.execute(selectors.apply(counted, selector, dialect)):
        counts.setdefault(phase_id, {})[state] = int(n)
    phases = (
        select(Phase.id, Experiment.name, Phase.name)
        .join(Experiment, Experiment.id == Phase.experiment_id)
        .order_by(Experiment.id, Phase.position, Phase.id)
    )
    if selector.experiments:
        phases = phases.where(Experiment.name.in_(selector.experiments))
    if selector.phases:
        phases = phases.where(Phase.name.in_(selector.phases))
    narrowed = bool(selector.states or selector.where or selector.ids)
    return [
        PhaseStatus(experiment, phase, counts.get(phase_id, {}))
        for phase_id, experiment, phase in conn.execute(phases)
        if phase_id in counts or not narrowed
    ]


def list_jobs(conn: Connection, selector: JobFilter, limit: int | None = 100) -> list[JobSummary]:
    """Jobs matching ``selector``, oldest first, at most ``limit``."""
    query = selectors.jobs_joined(
        Job.id,
        Experiment.name,
        Phase.name,
        Job.state,
        Job.params,
        Job.attempt,
        Job.max_attempts,
        Job.priority,
        Job.result,
        Job.state_reason,
        Job.updated_at,
    ).order_by(Job.id)
    query = selectors.apply(query, selector, conn.dialect.name)
    if limit is not None:
        query = query.limit(limit)
    return [JobSummary(*row) for row in conn.execute(query)]


def count_jobs(conn: Connection, selector: JobFilter) -> int:
    """How many jobs match ``selector`` (``list`` says how many it left out)."""
    query = selectors.apply(selectors.jobs_joined(func.count()), selector, conn.dialect.name)
    return int(conn.execute(query).scalar_one())


def show_job(conn: Connection, job_id: int) -> JobDetail:
    """A job with its dependencies both ways, attempts and events."""
    query = selectors.jobs_joined(
        Job.__table__, Experiment.name.label("_experiment"), Phase.name.label("_phase")
    ).where(Job.id == job_id)
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"no job with id {job_id}", hint="jobdb list shows the jobs and their ids")
    job = dict(row)
    return JobDetail(
        job={k: v for k, v in job.items() if not k.startswith("_")},
        experiment=job["_experiment"],
        phase=job["_phase"],
        parents=_relatives(conn, Edge.child_id, Edge.parent_id, job_id),
        children=_relatives(conn, Edge.parent_id, Edge.child_id, job_id),
        attempts=_rows(
            conn, select(Attempt.__table__).where(Attempt.job_id == job_id).order_by(Attempt.number)
        ),
        events=_rows(
            conn, select(Event.__table__).where(Event.job_id == job_id).order_by(Event.id)
        ),
    )


def _relatives(conn: Connection, this_side: Any, other_side: Any, job_id: int) -> list[Relative]:
    query = (
        select(Job.id, Phase.name, Job.state)
        .join(Edge, other_side == Job.id)
        .join(Phase, Phase.id == Job.phase_id)
        .where(this_side == job_id)
        .order_by(Job.id)
    )
    return [Relative(*r) for r in conn.execute(query)]


def _rows(conn: Connection, query: Select[Any]) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(query).mappings()]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, State):
        return value.value
    return value
