"""Writing a plan into the database: ``jobdb schedule``'s one transaction.

The spec layer (:mod:`jobdb.spec`) decides *what* jobs and edges a spec
means; this module makes the database hold them, idempotently:

- a job is identified by (phase, params hash), so re-running a spec finds
  every job already there and adds nothing; adding a grid value adds only
  the new jobs and the edges that touch them;
- jobs are created ``waiting`` with bulk Core inserts (one ``executemany``
  per table, no ORM objects: at 200,000 jobs that is the difference between
  seconds and minutes), then one set-based pass makes the ones whose parents
  are all done ``ready`` and blocks the ones under a parent that failed for
  good;
- a ready job that gains a new, unfinished parent goes back to waiting.

Everything happens in the caller's transaction, so a failure changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, select, update

from jobdb import queries
from jobdb.models import Edge, Experiment, Job, Phase
from jobdb.provenance import Provenance
from jobdb.spec import ExperimentSpec, Plan, PlannedJob
from jobdb.spec.params import dump_canonical
from jobdb.states import FAILURES, State

#: Rows per ``executemany`` batch (and per progress-bar step).
BATCH = 10_000

Progress = Callable[[int], None]


@dataclass
class PhaseCounts:
    """What scheduling found and did for one phase."""

    name: str
    planned: int = 0
    new: int = 0

    @property
    def existing(self) -> int:
        return self.planned - self.new


@dataclass
class ScheduleResult:
    """The outcome of writing a plan (or of a dry run: then nothing was written)."""

    experiment: str
    experiment_id: int | None
    created_experiment: bool
    phases: list[PhaseCounts] = field(default_factory=list)
    new_edges: int = 0
    ready: int = 0
    blocked: int = 0
    back_to_waiting: int = 0

    @property
    def new_jobs(self) -> int:
        return sum(p.new for p in self.phases)

    @property
    def planned_jobs(self) -> int:
        return sum(p.planned for p in self.phases)


def spec_hash(spec: ExperimentSpec) -> str:
    return hashlib.sha256(spec.text.encode()).hexdigest()


def preview(conn: Connection, plan: Plan) -> ScheduleResult:
    """What :func:`write_plan` would do, without writing (``--dry-run``)."""
    spec = plan.spec
    exp_id = _experiment_id(conn, spec.name)
    result = ScheduleResult(spec.name, exp_id, exp_id is None)
    new_refs: set[tuple[str, int]] = set()
    for phase in spec.phases:
        planned = plan.jobs[phase.name]
        existing = _existing_hashes(conn, exp_id, phase.name) if exp_id else {}
        counts = PhaseCounts(phase.name, len(planned))
        for index, job in enumerate(planned):
            if job.hash not in existing:
                counts.new += 1
                new_refs.add((phase.name, index))
        result.phases.append(counts)
    result.new_edges = sum(1 for p, c in plan.edges if p in new_refs or c in new_refs)
    return result


def write_plan(
    conn: Connection,
    plan: Plan,
    provenance: Provenance,
    *,
    actor: str,
    progress: Progress | None = None,
) -> ScheduleResult:
    """Create the experiment, its phases, new jobs and new edges; set initial states."""
    spec = plan.spec
    exp_id, created = _upsert_experiment(conn, spec, provenance)
    result = ScheduleResult(spec.name, exp_id, created)
    ids: dict[tuple[str, int], int] = {}
    new_ids: set[int] = set()
    for position, phase in enumerate(spec.phases):
        phase_id = upsert_phase(conn, exp_id, position, phase)
        counts, phase_ids, phase_new = write_jobs(
            conn, exp_id, phase_id, phase.name, plan.jobs[phase.name], progress
        )
        result.phases.append(counts)
        ids.update(phase_ids)
        new_ids.update(phase_new)
    new_edges = [(ids[p], ids[c]) for p, c in plan.edges if ids[p] in new_ids or ids[c] in new_ids]
    insert_rows(conn, "edges", ("parent_id", "child_id"), new_edges, progress)
    result.new_edges = len(new_edges)
    settle_states(conn, result, exp_id, new_ids, new_edges, actor)
    return result


def _experiment_id(conn: Connection, name: str) -> int | None:
    return conn.execute(select(Experiment.id).where(Experiment.name == name)).scalar()


def _upsert_experiment(
    conn: Connection, spec: ExperimentSpec, provenance: Provenance
) -> tuple[int, bool]:
    """The experiment's id; a changed spec replaces the stored text, hash and provenance."""
    values: dict[str, Any] = {
        "spec_text": spec.text,
        "spec_format": spec.format,
        "spec_hash": spec_hash(spec),
        "settings": spec.settings,
        **provenance.as_columns(),
    }
    found = conn.execute(
        select(Experiment.id, Experiment.spec_hash).where(Experiment.name == spec.name)
    ).first()
    if found is None:
        stmt = insert(Experiment).values(name=spec.name, **values).returning(Experiment.id)
        return int(conn.execute(stmt).scalar_one()), True
    exp_id, old_hash = found
    if old_hash != values["spec_hash"]:
        conn.execute(update(Experiment).where(Experiment.id == exp_id).values(**values))
    return int(exp_id), False


def upsert_phase(conn: Connection, exp_id: int, position: int, phase: Any) -> int:
    values = {
        "position": position,
        "command": phase.command,
        "task": phase.task,
        "config": phase.config,
    }
    found = conn.execute(
        select(Phase.id).where(Phase.experiment_id == exp_id, Phase.name == phase.name)
    ).scalar()
    if found is None:
        stmt = (
            insert(Phase)
            .values(experiment_id=exp_id, name=phase.name, **values)
            .returning(Phase.id)
        )
        return int(conn.execute(stmt).scalar_one())
    conn.execute(update(Phase).where(Phase.id == found).values(**values))
    return int(found)


def _existing_hashes(conn: Connection, exp_id: int | None, phase_name: str) -> dict[str, int]:
    query = (
        select(Job.params_hash, Job.id)
        .join(Phase, Phase.id == Job.phase_id)
        .where(Phase.experiment_id == exp_id, Phase.name == phase_name)
    )
    return {h: int(i) for h, i in conn.execute(query)}


def hashes_of_phase(conn: Connection, phase_id: int) -> dict[str, int]:
    query = select(Job.params_hash, Job.id).where(Job.phase_id == phase_id)
    return {h: int(i) for h, i in conn.execute(query)}


def write_jobs(
    conn: Connection,
    exp_id: int,
    phase_id: int,
    phase_name: str,
    planned: Sequence[PlannedJob],
    progress: Progress | None,
) -> tuple[PhaseCounts, dict[tuple[str, int], int], set[int]]:
    existing = hashes_of_phase(conn, phase_id)
    waiting = State.WAITING.value
    rows = [
        (
            exp_id,
            phase_id,
            job.params_json or dump_canonical(job.params),
            job.hash,
            waiting,
            job.priority,
            job.max_attempts,
            0,
        )
        for job in planned
        if job.hash not in existing
    ]
    insert_rows(conn, "jobs", _JOB_COLUMNS, rows, progress)
    all_ids = hashes_of_phase(conn, phase_id) if rows else existing
    ids = {(phase_name, i): all_ids[job.hash] for i, job in enumerate(planned)}
    new = {all_ids[row[3]] for row in rows}
    return PhaseCounts(phase_name, len(planned), len(rows)), ids, new


_JOB_COLUMNS = (
    "experiment_id",
    "phase_id",
    "params",
    "params_hash",
    "state",
    "priority",
    "max_attempts",
    "attempt",
)


def insert_rows(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    progress: Progress | None,
) -> None:
    """``executemany`` straight to the driver, in batches.

    At 200,000 rows SQLAlchemy's per-row parameter processing costs as much
    as SQLite's own work, and the values here are already what the database
    stores (the parameters as canonical JSON text), so the plain DB-API call
    is both faster and exact.
    """
    if conn.dialect.name == "postgresql":
        _copy_rows(conn, table, columns, rows, progress)
        return
    marks = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
    for batch in _batches(rows, progress):
        conn.exec_driver_sql(sql, batch)


def _copy_rows(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    progress: Progress | None,
) -> None:
    """PostgreSQL's ``COPY … FROM STDIN``: several times faster than ``executemany``."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for batch in _batches(rows, progress):
            for row in batch:
                copy.write_row(row)


def _batches(
    rows: list[tuple[Any, ...]], progress: Progress | None
) -> Iterator[list[tuple[Any, ...]]]:
    """``rows`` in slices of :data:`BATCH`, reporting each one written to ``progress``."""
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        yield batch
        if progress is not None:
            progress(len(batch))


def settle_states(
    conn: Connection,
    result: ScheduleResult,
    exp_id: int,
    new_ids: set[int],
    new_edges: list[tuple[int, int]],
    actor: str,
) -> None:
    """Initial states: ready where parents are done, blocked under a failed parent."""
    regained = sorted({child for _, child in new_edges} - new_ids)
    if regained:
        result.back_to_waiting = len(
            queries.demote_ready_with_unfinished_parents(conn, regained, actor=actor)
        )
    if not new_ids:
        return
    result.ready = len(queries.promote_waiting(conn, actor=actor, experiment_ids=[exp_id]))
    failed_parents = conn.execute(
        select(Edge.parent_id)
        .join(Job, Job.id == Edge.parent_id)
        .where(
            Edge.child_id.in_(select(Job.id).where(Job.experiment_id == exp_id)),
            Job.state.in_([s.value for s in (*FAILURES, State.BLOCKED)]),
        )
        .distinct()
    ).scalars()
    parents = sorted(failed_parents)
    if parents:
        result.blocked = len(
            queries.block_descendants(conn, parents, actor=actor, reason="failed before scheduling")
        )
