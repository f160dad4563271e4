"""Tiny helpers that put experiments, phases, jobs and edges straight into a database.

They use Core ``insert()`` in bulk (one round trip per call) inside the
caller's transaction and return the new ids, oldest first.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

from sqlalchemy import Connection, RowMapping, Table, insert, select, update

from jobdb import procs
from jobdb.models import Attempt, Edge, Event, Experiment, Job, Phase
from jobdb.queries import start
from jobdb.states import State
from jobdb.store import Store

experiments = cast(Table, Experiment.__table__)
phases = cast(Table, Phase.__table__)
jobs = cast(Table, Job.__table__)
edges = cast(Table, Edge.__table__)
attempts = cast(Table, Attempt.__table__)
events = cast(Table, Event.__table__)

_names = itertools.count(1)


def make_experiment(conn: Connection, name: str | None = None) -> int:
    """A new experiment; returns its id."""
    name = name or f"exp-{next(_names)}"
    stmt = insert(experiments).values(name=name).returning(experiments.c.id)
    return int(conn.execute(stmt).scalar_one())


def make_phase(conn: Connection, experiment_id: int, name: str = "train", position: int = 0) -> int:
    """A new phase of ``experiment_id``; returns its id."""
    stmt = (
        insert(phases)
        .values(experiment_id=experiment_id, name=name, position=position, command="true")
        .returning(phases.c.id)
    )
    return int(conn.execute(stmt).scalar_one())


def make_jobs(
    conn: Connection,
    phase_id: int,
    n: int,
    *,
    state: State | str = State.READY,
    priority: int | Sequence[int] = 0,
    max_attempts: int = 1,
    attempt: int = 0,
    **columns: Any,
) -> list[int]:
    """``n`` jobs of ``phase_id`` (one bulk insert); returns their ids in insertion order.

    ``priority`` is one value for all jobs or one per job; extra keyword
    arguments are column values shared by all jobs.
    """
    experiment_id = conn.execute(
        select(phases.c.experiment_id).where(phases.c.id == phase_id)
    ).scalar_one()
    priorities = [priority] * n if isinstance(priority, int) else list(priority)
    if len(priorities) != n:
        raise ValueError(f"{len(priorities)} priorities for {n} jobs")
    rows = []
    for index, prio in enumerate(priorities):
        number = next(_names)
        rows.append(
            {
                "experiment_id": experiment_id,
                "phase_id": phase_id,
                "params": {"index": index, "seed": number},
                "params_hash": f"{number:064x}",
                "state": str(state),
                "priority": prio,
                "max_attempts": max_attempts,
                "attempt": attempt,
                **columns,
            }
        )
    if not rows:
        return []
    stmt = insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True)
    return [int(job_id) for job_id in conn.execute(stmt, rows).scalars()]


def make_edges(conn: Connection, pairs: Iterable[tuple[int, int]]) -> None:
    """Parent → child edges."""
    rows = [{"parent_id": parent, "child_id": child} for parent, child in pairs]
    if rows:
        conn.execute(insert(edges), rows)


def make_phase_with_jobs(
    conn: Connection, n: int, *, state: State = State.READY, **job_columns: Any
) -> tuple[int, int, list[int]]:
    """An experiment with one phase of ``n`` jobs: (experiment id, phase id, job ids)."""
    experiment_id = make_experiment(conn)
    phase_id = make_phase(conn, experiment_id)
    return experiment_id, phase_id, make_jobs(conn, phase_id, n, state=state, **job_columns)


def states_of(conn: Connection, job_ids: Iterable[int]) -> dict[int, str]:
    """job id → its current state."""
    rows = conn.execute(select(jobs.c.id, jobs.c.state).where(jobs.c.id.in_(list(job_ids))))
    return {int(job_id): str(state) for job_id, state in rows}


def job_row(conn: Connection, job_id: int) -> RowMapping:
    """The full row of one job, as a mapping."""
    return conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one()


def events_of(conn: Connection, job_id: int) -> list[RowMapping]:
    """The events of one job, oldest first."""
    stmt = select(events).where(events.c.job_id == job_id).order_by(events.c.id)
    return list(conn.execute(stmt).mappings())


def attempts_of(conn: Connection, job_id: int) -> list[RowMapping]:
    """The attempt rows of one job, by number."""
    stmt = select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.number)
    return list(conn.execute(stmt).mappings())


@contextlib.contextmanager
def running_program(store: Store, job_id: int) -> Iterator[subprocess.Popen[bytes]]:
    """Start a ready job with a real ``sleep 1000`` as its program, recorded like a supervisor.

    The program has its own process group (its id is ``jobs.pid``) and the
    job's id and attempt in its environment; ``jobs.worker`` is this test
    process's supervisor token. Killed at the end whatever happened.
    """
    with store.write() as conn:
        attempt = start(conn, job_id, actor="runner", host=procs.HOST)
    env = {**os.environ, procs.ENV_JOB_ID: str(job_id), procs.ENV_ATTEMPT: str(attempt)}
    env[procs.ENV_DATABASE] = store.identity
    proc = subprocess.Popen(["sleep", "1000"], start_new_session=True, env=env)
    try:
        with store.write() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(pid=proc.pid, worker=procs.supervisor_token())
            )
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
