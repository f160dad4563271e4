"""A real race: many processes claim the same ready jobs; each job must be claimed exactly once.

Each process is started with the "spawn" method and opens its own engine, as
independent workers on a cluster would. On SQLite the ``BEGIN IMMEDIATE``
write lock plus the busy timeout must serialise them without a single
"database is locked"; on PostgreSQL ``FOR UPDATE SKIP LOCKED`` must keep them
off each other's rows.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from jobdb.store import connect
from tests.factories import attempts, events, jobs, make_phase_with_jobs
from tests.integration._race_worker import claim_until_empty

pytestmark = pytest.mark.slow

RESULT_TIMEOUT_S = 120


def _ready_jobs(url: URL, n: int) -> list[int]:
    store = connect(url)
    try:
        with store.write() as conn:
            return make_phase_with_jobs(conn, n)[2]
    finally:
        store.dispose()


def _race(url: URL, processes: int, *, barrier: bool) -> dict[int, list[int]]:
    """Run ``processes`` claimers to the end; returns worker index → ids it claimed."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start = ctx.Barrier(processes) if barrier else None
    workers = [
        ctx.Process(target=claim_until_empty, args=(url, i, 1000 + i, results, start))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    claimed: dict[int, list[int]] = {}
    errors: list[str] = []
    try:
        for _ in workers:
            index, ids, error = results.get(timeout=RESULT_TIMEOUT_S)
            claimed[index] = ids
            if error is not None:
                errors.append(f"worker {index}: {error}")
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    assert not [e for e in errors if "database is locked" in e], errors
    assert errors == []
    assert [w.exitcode for w in workers] == [0] * processes
    return claimed


def _assert_exactly_once(url: URL, expected: list[int], claimed: dict[int, list[int]]) -> None:
    every = [job_id for ids in claimed.values() for job_id in ids]
    duplicates = [job_id for job_id, n in Counter(every).items() if n > 1]
    assert duplicates == []
    assert sorted(every) == sorted(expected)
    store = connect(url)
    try:
        with store.read() as conn:
            by_state = conn.execute(
                select(jobs.c.state, jobs.c.attempt, func.count()).group_by(
                    jobs.c.state, jobs.c.attempt
                )
            ).all()
            attempt_rows = conn.execute(
                select(attempts.c.number, attempts.c.state, func.count()).group_by(
                    attempts.c.number, attempts.c.state
                )
            ).all()
            distinct = conn.execute(select(func.count(attempts.c.job_id.distinct()))).scalar_one()
            event_rows = conn.execute(
                select(events.c.from_state, events.c.to_state, func.count()).group_by(
                    events.c.from_state, events.c.to_state
                )
            ).all()
    finally:
        store.dispose()
    n = len(expected)
    assert by_state == [("queued", 1, n)]
    assert attempt_rows == [(1, "queued", n)]
    assert distinct == n
    assert event_rows == [("ready", "queued", n)]


def test_eight_processes_claim_5000_jobs_exactly_once(db_url: URL) -> None:
    expected = _ready_jobs(db_url, 5000)
    started = time.monotonic()
    claimed = _race(db_url, 8, barrier=True)
    elapsed = time.monotonic() - started
    _assert_exactly_once(db_url, expected, claimed)
    # Several processes got work, i.e. they really overlapped.
    sizes = sorted(len(ids) for ids in claimed.values())
    assert sum(1 for size in sizes if size) >= 2, (sizes, elapsed)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_32_processes_starting_at_once_on_sqlite(db_url: URL) -> None:
    expected = _ready_jobs(db_url, 2000)
    claimed = _race(db_url, 32, barrier=True)
    _assert_exactly_once(db_url, expected, claimed)
