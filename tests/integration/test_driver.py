"""The driver-level hot path (jobdb.queries.driver) and the idle-connection ping, on both backends.

The per-job statements run through the DB-API driver directly; these tests
check that what comes back is what Core would give (JSON decoded, the
database clock, SQL NULL vs JSON null), that errors are still SQLAlchemy's,
and that one id and many ids (one ``in_ids`` parameter either way) agree.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import threading

import pytest
from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.exc import IntegrityError

from jobdb import queries
from jobdb import store as store_module
from jobdb.queries.claims import _insert_attempts
from jobdb.queries.core import jobs
from jobdb.queries.driver import Prepared
from jobdb.states import State
from jobdb.store import Store
from tests.factories import attempts_of, job_row, make_edges, make_jobs

ACTOR = "tester"


def test_claim_start_finish_through_the_driver_record_what_core_would(
    store: Store, phase_id: int
) -> None:
    params = {"lr": 0.1, "name": "a b; $x", "nested": {"k": [1, 2]}}
    with store.write() as conn:
        (job_id,) = make_jobs(conn, phase_id, 1, params=params)
    with store.write() as conn:
        (claimed,) = queries.claim(conn, 1, actor=ACTOR, worker="w1")
    assert (claimed.id, claimed.attempt, claimed.params) == (job_id, 1, params)
    with store.write() as conn:
        queries.start(conn, job_id, actor=ACTOR, attempt=1, host="h", pid=7, params={"lr": 0.2})
        queries.finish(conn, job_id, 1, State.DONE, actor=ACTOR, result={"acc": 0.9})
    with store.read() as conn:
        row = job_row(conn, job_id)
        (attempt,) = attempts_of(conn, job_id)
    assert (row["state"], row["worker"], row["host"], row["pid"]) == ("done", "w1", "h", 7)
    assert row["result"] == {"acc": 0.9}
    assert isinstance(row["started_at"], dt.datetime) and row["started_at"].tzinfo is not None
    assert row["finished_at"] >= row["started_at"]
    assert (attempt["state"], attempt["params"], attempt["result"]) == (
        "done",
        {"lr": 0.2},
        {"acc": 0.9},
    )
    assert attempt["ended_at"] is not None and attempt["started_at"] is not None


def test_single_and_batched_promotion_agree(store: Store, phase_id: int) -> None:
    """One finished parent and many go through the same statement: the right children."""
    with store.write() as conn:
        parents = make_jobs(conn, phase_id, 3, state=State.DONE)
        lone_child, shared_child = make_jobs(conn, phase_id, 2, state=State.WAITING)
        make_edges(
            conn, [(parents[0], lone_child), (parents[1], shared_child), (parents[2], shared_child)]
        )
    with store.write() as conn:
        assert queries.promote_children(conn, [parents[0]], actor=ACTOR) == [lone_child]
        assert queries.promote_children(conn, parents[1:], actor=ACTOR) == [shared_child]


def test_driver_errors_are_sqlalchemy_errors_and_roll_back(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        (job_id,) = make_jobs(conn, phase_id, 1)
        queries.claim(conn, 1, actor=ACTOR)
    with pytest.raises(IntegrityError), store.write() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(priority=5))
        _insert_attempts(conn, [job_id], State.QUEUED)  # attempt 1 exists: unique violation
    with store.read() as conn:
        assert job_row(conn, job_id)["priority"] == 0  # the whole transaction rolled back
        assert len(attempts_of(conn, job_id)) == 1


def test_prepared_refuses_what_it_cannot_run_as_is(store: Store) -> None:
    expanding = Prepared(update(jobs).where(jobs.c.id.in_([1, 2])).values(priority=1))
    with store.write() as conn, pytest.raises(ValueError, match="expanding"):
        expanding.rows(conn, {})
    plain = Prepared(update(jobs).where(jobs.c.id == 1).values(priority=1))
    with store.engine.connect() as conn, pytest.raises(RuntimeError, match="inside Store"):
        plain.rows(conn, {})


def test_echo_shows_driver_statements(
    store: Store, phase_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    with store.write() as conn:
        make_jobs(conn, phase_id, 1)
    store.engine.echo = True
    try:
        with caplog.at_level(logging.INFO, "sqlalchemy.engine.Engine"), store.write() as conn:
            queries.claim(conn, 1, actor=ACTOR)
    finally:
        store.engine.echo = False
    assert any(
        "[driver]" in r.getMessage() and "UPDATE jobs" in r.getMessage() for r in caplog.records
    )


def _driver_statements(store: Store, caplog: pytest.LogCaptureFixture, job_id: int) -> list[str]:
    """The statements claim → start → finish of ``job_id`` send through the driver."""
    store.engine.echo = True
    caplog.clear()
    try:
        with caplog.at_level(logging.INFO, "sqlalchemy.engine.Engine"):
            with store.write() as conn:
                (claimed,) = queries.claim(conn, 1, actor=ACTOR, job_ids=[job_id])
            with store.write() as conn:
                queries.start(conn, job_id, actor=ACTOR, attempt=claimed.attempt)
                queries.finish(conn, job_id, claimed.attempt, State.DONE, actor=ACTOR)
    finally:
        store.engine.echo = False
    return [r.getMessage() for r in caplog.records if "[driver]" in r.getMessage()]


def test_a_job_and_its_attempt_row_change_in_one_statement_on_postgres(
    store: Store, phase_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Per-job round trips on PostgreSQL: the job's change carries its attempt row along,
    and a job without children skips the promotion; a parent still promotes."""
    with store.write() as conn:
        leaf, parent, child = make_jobs(conn, phase_id, 3)
        make_edges(conn, [(parent, child)])
        conn.execute(update(jobs).where(jobs.c.id == child).values(state=State.WAITING.value))
    sent = _driver_statements(store, caplog, leaf)
    # PostgreSQL: start and finish, one statement each (the claim, filtered by id, goes
    # through Core with its attempt row). SQLite, with no WITH around an UPDATE, updates
    # the attempt row in a statement of its own per change; its claim's attempt row is
    # the trigger's.
    assert len(sent) == (2 if store.dialect == "postgresql" else 4), sent
    assert not any("INSERT INTO attempts" in statement for statement in sent)
    assert not any("parents done" in statement for statement in sent)
    sent = _driver_statements(store, caplog, parent)
    assert sum("parents done" in statement for statement in sent) == 1
    with store.read() as conn:
        assert job_row(conn, child)["state"] == State.READY.value
        assert [a["state"] for a in attempts_of(conn, leaf)] == ["done"]
        assert [a["state"] for a in attempts_of(conn, parent)] == ["done"]


def test_the_per_job_statements_keep_one_generic_plan_on_postgres(
    store: Store, phase_id: int
) -> None:
    """PostgreSQL plans a prepared statement per call unless its generic plan looks as
    cheap; for these statements planning costs about what running them does. A bound
    LIMIT or an id array makes the generic plan look dear, so the hot path has neither."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite has no plan cache to choose from")
    with store.write() as conn:
        make_jobs(conn, phase_id, 16)
    for _ in range(16):  # psycopg prepares at the 6th call; 5 custom plans come next
        with store.write() as conn:
            (job,) = queries.claim(conn, 1, actor=ACTOR)
            queries.start(conn, job.id, actor=ACTOR, attempt=job.attempt)
            queries.finish(conn, job.id, job.attempt, State.DONE, actor=ACTOR)
    with store.write() as conn:  # the same kept connection: its prepared statements
        plans = conn.execute(
            text("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        ).all()
    hot = {"claim": "picked AS", "start": "started_at=statement_timestamp()", "finish": "ended_at"}
    for name, marker in hot.items():
        (found,) = [row for row in plans if marker in row.statement]
        assert found.generic_plans > 0 and found.custom_plans <= 5, (name, found)


def test_an_idle_postgres_connection_killed_by_the_server_is_replaced(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite has no server to lose")
    with store.read() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    killer = Store(store_module.make_engine(store.engine.url))
    try:
        with killer.write() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        killer.dispose()
    monkeypatch.setattr(store_module, "PING_AFTER_IDLE_S", 0.0)
    with store.read() as conn:  # the pooled connection is dead: pinged and replaced
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
        assert conn.execute(select(jobs.c.id)).first() is None


def _backend_of(conn: Connection) -> object:
    """What identifies the database session behind ``conn``."""
    return conn.connection.dbapi_connection


def test_a_thread_keeps_its_write_connection_and_threads_do_not_share_one(
    store: Store, phase_id: int
) -> None:
    with store.write() as conn:
        first = _backend_of(conn)
    with store.write() as conn:
        assert _backend_of(conn) is first  # no pool checkout between a worker's transactions

    def write_jobs(n: int) -> tuple[int, set[int]]:
        seen = set()
        for _ in range(n):
            with store.write() as conn:
                seen.add(id(_backend_of(conn)))
                make_jobs(conn, phase_id, 1)
        return threading.get_ident(), seen

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(write_jobs, [10] * 4))
    per_thread: dict[int, set[int]] = {}
    for thread, seen in results:  # a thread may have run more than one of the four
        per_thread.setdefault(thread, set()).update(seen)
    assert all(len(seen) == 1 for seen in per_thread.values())
    assert len(set().union(*per_thread.values())) == len(per_thread)
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 40


def test_a_write_inside_a_write_gets_a_connection_of_its_own(store: Store, phase_id: int) -> None:
    if store.dialect != "postgresql":
        pytest.skip("a second SQLite writer waits for the first one's lock")
    with store.write() as outer:
        (outer_job,) = make_jobs(outer, phase_id, 1)
        with store.write() as inner:
            assert _backend_of(inner) is not _backend_of(outer)
            (inner_job,) = make_jobs(inner, phase_id, 1)
    with store.read() as conn:
        ids = conn.execute(select(jobs.c.id)).scalars().all()
    assert sorted(ids) == sorted([outer_job, inner_job])


def test_an_idle_write_connection_killed_by_the_server_is_replaced(
    store: Store, phase_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite has no server to lose")
    with store.write() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with store.read() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    monkeypatch.setattr(store_module, "PING_AFTER_IDLE_S", 0.0)
    with store.write() as conn:  # the kept connection is dead: pinged and replaced
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
        make_jobs(conn, phase_id, 1)
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 1
