"""The worker side of the W3 claims benchmark: the timed loops and the process pool.

Kept apart from ``claims.py`` (which sets up databases, checks and reports)
so that the spawned workers import only what they run.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import sqlite3
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from typing import Any

from common import now
from sqlalchemy.engine import URL, make_url

from jobdb import queries
from jobdb.states import State
from jobdb.store import connect

VARIANTS = ("floor", "jobdb", "jobdb-3tx")
BARRIER_TIMEOUT_S = 300.0
RESULT_TIMEOUT_S = 1800.0
LOCK_MESSAGES = ("database is locked", "deadlock detected", "could not obtain lock")

FLOOR_CLAIM = {
    "sqlite": "UPDATE jobs SET state = 'queued' WHERE id = (SELECT id FROM jobs "
    "WHERE state = 'ready' ORDER BY priority DESC, id LIMIT 1) RETURNING id",
    "postgresql": "UPDATE jobs SET state = 'queued' WHERE id = (SELECT id FROM jobs "
    "WHERE state = 'ready' ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "RETURNING id",
}
FLOOR_DONE = {
    "sqlite": "UPDATE jobs SET state = 'done' WHERE id = ? AND state = 'queued' RETURNING id",
    "postgresql": "UPDATE jobs SET state = 'done' WHERE id = %s AND state = 'queued' RETURNING id",
}


@dataclass
class Target:
    """Where one run's workers claim: a SQLite file or a PostgreSQL database."""

    backend: str  # "sqlite" or "postgresql"
    variant: str
    url: str  # a SQLAlchemy URL; the throwaway server has no password


@dataclass
class WorkerResult:
    worker: int
    claimed: list[int] = field(default_factory=list)
    lock_errors: int = 0
    started: float = 0.0
    finished: float = 0.0
    error: str | None = None


@dataclass
class RunResult:
    backend: str
    variant: str
    jobs_per_s: float
    double_claims: int
    lock_errors: int
    not_done: int
    per_worker: list[int]


# --------------------------------------------------------------------------
# the worker loops (each runs in a spawned process)


def is_lock_error(exc: BaseException) -> bool:
    message = str(exc).lower()
    return any(words in message for words in LOCK_MESSAGES)


def retrying(result: WorkerResult, step: Callable[..., Any], *args: Any) -> Any:
    """Run one transaction, counting and retrying lock errors (there should be none)."""
    while True:
        try:
            return step(*args)
        except Exception as exc:
            if not is_lock_error(exc):
                raise
            result.lock_errors += 1


def open_floor_connection(target: Target) -> Any:
    url = make_url(target.url)
    if target.backend == "sqlite":
        conn = sqlite3.connect(str(url.database), isolation_level=None, timeout=60)
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA synchronous = FULL")  # what jobdb sets (store.py)
        conn.execute("PRAGMA journal_mode = WAL")
        return conn
    import psycopg

    return psycopg.connect(**psycopg_params(url), options="-c jit=off")


def floor_loop(target: Target, barrier: Barrier, result: WorkerResult) -> None:
    conn = open_floor_connection(target)
    sqlite = target.backend == "sqlite"
    claim_sql, done_sql = FLOOR_CLAIM[target.backend], FLOOR_DONE[target.backend]

    def transaction(sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if sqlite:
            conn.execute("BEGIN IMMEDIATE")  # psycopg begins implicitly
        try:
            rows = list(conn.execute(sql, params).fetchall())
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return rows

    def done(job_id: int) -> None:
        if not transaction(done_sql, (job_id,)):
            raise RuntimeError(f"job {job_id} was not queued when marked done")

    barrier.wait(BARRIER_TIMEOUT_S)
    result.started = now()
    while rows := retrying(result, transaction, claim_sql):
        job_id = int(rows[0][0])
        result.claimed.append(job_id)
        retrying(result, done, job_id)
    result.finished = now()
    conn.close()


def jobdb_loop(target: Target, barrier: Barrier, result: WorkerResult) -> None:
    store = connect(make_url(target.url))  # its schema check opens a pooled connection
    actor = worker = f"bench-{result.worker}"

    def claim() -> list[queries.ClaimedJob]:
        with store.write() as conn:
            return queries.claim(conn, 1, actor=actor, worker=worker)

    def start(job: queries.ClaimedJob) -> None:
        with store.write() as conn:
            queries.start(conn, job.id, actor=actor, attempt=job.attempt)

    def finish(job: queries.ClaimedJob) -> None:
        with store.write() as conn:
            queries.finish(conn, job.id, job.attempt, State.DONE, actor=actor)

    def start_and_finish(job: queries.ClaimedJob) -> None:
        with store.write() as conn:
            queries.start(conn, job.id, actor=actor, attempt=job.attempt)
            queries.finish(conn, job.id, job.attempt, State.DONE, actor=actor)

    split = target.variant == "jobdb-3tx"
    barrier.wait(BARRIER_TIMEOUT_S)
    result.started = now()
    while claimed := retrying(result, claim):
        job = claimed[0]
        result.claimed.append(job.id)
        if split:
            retrying(result, start, job)
            retrying(result, finish, job)
        else:
            retrying(result, start_and_finish, job)
    result.finished = now()
    store.dispose()


def worker_main(target: Target, number: int, barrier: Barrier, results: Any) -> None:
    """One worker process: run its loop, send back what it claimed (or why it failed)."""
    result = WorkerResult(worker=number)
    try:
        if target.variant == "floor":
            floor_loop(target, barrier, result)
        else:
            jobdb_loop(target, barrier, result)
    except BaseException:
        result.error = traceback.format_exc()
        barrier.abort()
    results.put(result)


def psycopg_params(url: URL) -> dict[str, Any]:
    return {"host": url.host, "port": url.port, "user": url.username, "dbname": url.database}


# --------------------------------------------------------------------------
# one run: workers behind a barrier, then the checks


def run_workers(target: Target, workers: int) -> list[WorkerResult]:
    """Start the workers; the clock starts when the barrier releases them all."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=worker_main, args=(target, n, barrier, results), daemon=True)
        for n in range(workers)
    ]
    for proc in procs:
        proc.start()
    with contextlib.suppress(Exception):  # a broken barrier: the failure comes back below
        barrier.wait(BARRIER_TIMEOUT_S)
    collected = [results.get(timeout=RESULT_TIMEOUT_S) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    failed = [r.error for r in collected if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} worker(s) failed; the first:\n{failed[0]}")
    return collected
