"""The monitor's verdicts, on SQLite and PostgreSQL, with real processes on this host.

A supervisor is simulated by a real ``sleep`` whose token goes into
``jobs.worker`` (killed to make it dead); a job's program by another
``sleep`` in its own session whose environment names the job and attempt.
Stale heartbeats are made by the database clock (an UPDATE into the past),
never by waiting.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, update

from jobdb import monitor, procs, queries
from jobdb.monitor import Verdict
from jobdb.queries import verdicts
from jobdb.queries.verdicts import Judged
from jobdb.sqltypes import db_now
from jobdb.states import State
from jobdb.store import Store
from tests.factories import (
    attempts_of,
    events,
    events_of,
    job_row,
    jobs,
    make_edges,
    make_jobs,
    phases,
    states_of,
)

ACTOR = "monitor-test"
TIMEOUT = 60.0

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn(store: Store) -> Iterator[Spawn]:
    """Start ``sleep 60`` in its own session (optionally as job attempt's program); reaped after."""
    started: list[subprocess.Popen[bytes]] = []

    def start(job: tuple[int, int] | None = None) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if job is not None:
            env[procs.ENV_JOB_ID], env[procs.ENV_ATTEMPT] = map(str, job)
            env[procs.ENV_DATABASE] = store.identity
        proc = subprocess.Popen(["sleep", "60"], start_new_session=True, env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def dead_token(spawn: Spawn) -> str:
    """The token of a supervisor that has died (a real process, started then killed)."""
    proc = spawn()
    token = procs.supervisor_token(proc.pid)
    proc.kill()
    proc.wait()
    return token


def live_token(spawn: Spawn) -> str:
    return procs.supervisor_token(spawn().pid)


def claimed(store: Store, phase_id: int, worker: str, **columns: Any) -> int:
    """A new job claimed (queued, attempt 1) by the supervisor ``worker``."""
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1, **columns)
        queries.claim(conn, 1, actor=ACTOR, worker=worker, job_ids=[job_id])
    return job_id


def started(store: Store, job_id: int, *, host: str = procs.HOST, pid: int | None = None) -> None:
    """Mark a claimed job running (attempt 1) on ``host`` with program group ``pid``."""
    with store.write() as conn:
        queries.start(conn, job_id, actor=ACTOR, attempt=1, host=host, pid=pid)


def running(store: Store, phase_id: int, worker: str, **columns: Any) -> int:
    job_id = claimed(store, phase_id, worker, **columns)
    started(store, job_id)
    return job_id


def age_heartbeat(store: Store, *job_ids: int, seconds: float = 3600) -> None:
    """Put the heartbeat in the past, by the database clock."""
    with store.write() as conn:
        past = conn.execute(select(db_now())).scalar_one() - dt.timedelta(seconds=seconds)
        conn.execute(update(jobs).where(jobs.c.id.in_(job_ids)).values(heartbeat_at=past))


def check(store: Store) -> list[Verdict]:
    return monitor.check_once(store, heartbeat_timeout=TIMEOUT, actor=ACTOR)


def set_retry(store: Store, phase_id: int, **policy: Any) -> None:
    with store.write() as conn:
        conn.execute(update(phases).where(phases.c.id == phase_id).values(config={"retry": policy}))


def elsewhere_token() -> str:
    return str(procs.Token("elsewhere.example", 4242, 1.0))


# --------------------------------------------------------------------------
# stale heartbeats


def test_stale_heartbeat_crashes_the_job(store: Store, phase_id: int) -> None:
    job_id = running(store, phase_id, elsewhere_token())
    age_heartbeat(store, job_id)
    assert check(store) == [Verdict(job_id, 1, State.CRASHED, "heartbeat")]
    with store.read() as conn:
        row = job_row(conn, job_id)
        assert (row["state"], row["state_reason"], row["state_actor"]) == (
            "crashed",
            "heartbeat",
            ACTOR,
        )
        assert "no heartbeat for more than 60 s" in row["error"]
        [attempt] = attempts_of(conn, job_id)
        assert (attempt["state"], attempt["reason"]) == ("crashed", "heartbeat")
        assert attempt["ended_at"] is not None
    assert check(store) == []


def test_stale_heartbeat_is_retried_while_attempts_are_left(store: Store, phase_id: int) -> None:
    job_id = running(store, phase_id, elsewhere_token(), max_attempts=2)
    age_heartbeat(store, job_id)
    assert check(store) == [Verdict(job_id, 1, State.CRASHED, "heartbeat", retried=True)]
    with store.read() as conn:
        row = job_row(conn, job_id)
        assert (row["state"], row["attempt"]) == ("ready", 1)
        [attempt] = attempts_of(conn, job_id)
        assert (attempt["state"], attempt["reason"]) == ("crashed", "heartbeat")
        assert attempt["ended_at"] is not None
        steps = [(e["from_state"], e["to_state"], e["reason"]) for e in events_of(conn, job_id)]
        assert steps[-2:] == [
            ("running", "crashed", "heartbeat"),
            ("crashed", "ready", "retry after heartbeat"),
        ]


def test_a_fresh_heartbeat_is_left_alone(store: Store, phase_id: int) -> None:
    job_id = running(store, phase_id, elsewhere_token())
    age_heartbeat(store, job_id, seconds=TIMEOUT / 2)
    assert check(store) == []
    with store.read() as conn:
        assert states_of(conn, [job_id]) == {job_id: "running"}


def test_a_policy_that_does_not_retry_crashes_crashes_for_good(store: Store, phase_id: int) -> None:
    set_retry(store, phase_id, on=["failed"])
    job_id = running(store, phase_id, elsewhere_token(), max_attempts=3)
    age_heartbeat(store, job_id)
    [verdict] = check(store)
    assert (verdict.state, verdict.retried) == (State.CRASHED, False)


def test_stale_heartbeat_here_stops_the_program(store: Store, phase_id: int, spawn: Spawn) -> None:
    """A supervisor alive but silent (hung, cut off from the database): its program is stopped."""
    job_id = claimed(store, phase_id, live_token(spawn))
    program = spawn((job_id, 1))
    started(store, job_id, pid=program.pid)
    age_heartbeat(store, job_id)
    assert check(store) == [Verdict(job_id, 1, State.CRASHED, "heartbeat")]
    assert program.wait(timeout=10) == -signal.SIGTERM


# --------------------------------------------------------------------------
# supervisors on this host


def test_dead_supervisor_and_live_orphan(store: Store, phase_id: int, spawn: Spawn) -> None:
    job_id = claimed(store, phase_id, dead_token(spawn))
    program = spawn((job_id, 1))
    started(store, job_id, pid=program.pid)
    assert check(store) == [Verdict(job_id, 1, State.CRASHED, "supervisor lost")]
    assert program.wait(timeout=10) == -signal.SIGTERM
    with store.read() as conn:
        row = job_row(conn, job_id)
        assert (row["state"], row["state_reason"]) == ("crashed", "supervisor lost")
        assert "terminated the orphaned program" in row["error"]


def test_an_orphan_is_found_by_its_environment_when_no_pid_was_recorded(
    store: Store, phase_id: int, spawn: Spawn
) -> None:
    """The supervisor died between starting the program and recording its pid."""
    job_id = claimed(store, phase_id, dead_token(spawn))
    program = spawn((job_id, 1))
    started(store, job_id, pid=None)
    assert check(store) == [Verdict(job_id, 1, State.CRASHED, "supervisor lost")]
    assert program.wait(timeout=10) == -signal.SIGTERM


def test_dead_supervisor_and_program_gone(store: Store, phase_id: int, spawn: Spawn) -> None:
    job_id = claimed(store, phase_id, dead_token(spawn), max_attempts=2)
    gone = dead_token(spawn)  # a pid that existed; the group is gone
    started(store, job_id, pid=procs.parse_token(gone).pid)  # type: ignore[union-attr]
    assert check(store) == [Verdict(job_id, 1, State.CRASHED, "process vanished", retried=True)]
    with store.read() as conn:
        assert states_of(conn, [job_id]) == {job_id: "ready"}
        assert "exit status unknown" in job_row(conn, job_id)["error"]


def test_queued_job_with_a_dead_supervisor_goes_back_to_ready(
    store: Store, phase_id: int, spawn: Spawn
) -> None:
    job_id = claimed(store, phase_id, dead_token(spawn))
    assert check(store) == [Verdict(job_id, 1, State.READY, "supervisor lost")]
    with store.read() as conn:
        row = job_row(conn, job_id)
        assert (row["state"], row["attempt"]) == ("ready", 1)
        [attempt] = attempts_of(conn, job_id)
        assert (attempt["state"], attempt["reason"]) == ("released", "supervisor lost")
    with store.write() as conn:
        [again] = queries.claim(conn, 1, actor=ACTOR, job_ids=[job_id])
    assert again.attempt == 2


def test_live_supervisors_are_left_alone(store: Store, phase_id: int, spawn: Spawn) -> None:
    token = live_token(spawn)
    queued = claimed(store, phase_id, token)
    busy = claimed(store, phase_id, token)
    program = spawn((busy, 1))
    started(store, busy, pid=program.pid)
    assert check(store) == []
    assert program.poll() is None
    with store.read() as conn:
        assert states_of(conn, [queued, busy]) == {queued: "queued", busy: "running"}


def test_a_queued_slurm_job_outlives_the_dispatcher_that_submitted_it(
    store: Store, phase_id: int, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host's process checks leave it to Slurm; Slurm's own view is tested in
    # tests/slurm (here no cluster answers, so the Slurm pass changes nothing).
    monkeypatch.setenv("SLURM_CONF", "/nonexistent/slurm.conf")
    job_id = claimed(store, phase_id, dead_token(spawn))
    with store.write() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(executor="slurm"))
    assert check(store) == []
    with store.read() as conn:
        assert states_of(conn, [job_id]) == {job_id: "queued"}


def test_jobs_of_other_hosts_are_not_judged_by_process_checks(
    store: Store, phase_id: int, spawn: Spawn
) -> None:
    """A pid on another host says nothing here, however dead it looks; a non-token neither."""
    other = str(procs.Token("elsewhere.example", os.getpid() + 10**6, 1.0))
    queued = claimed(store, phase_id, other)
    busy = running(store, phase_id, other)
    slurm = claimed(store, phase_id, "slurm-array-17")
    started(store, slurm, host="node7")
    assert check(store) == []
    with store.read() as conn:
        assert states_of(conn, [queued, busy, slurm]) == {
            queued: "queued",
            busy: "running",
            slurm: "running",
        }
    age_heartbeat(store, busy)
    assert [v.reason for v in check(store)] == ["heartbeat"]


def test_crashed_for_good_blocks_descendants(store: Store, phase_id: int, spawn: Spawn) -> None:
    parent = running(store, phase_id, dead_token(spawn))
    with store.write() as conn:
        child, grandchild = make_jobs(conn, phase_id, 2, state=State.WAITING)
        make_edges(conn, [(parent, child), (child, grandchild)])
    [verdict] = check(store)
    assert (verdict.reason, verdict.retried, verdict.blocked) == (
        "process vanished",
        False,
        [child, grandchild],
    )
    with store.read() as conn:
        assert states_of(conn, [child, grandchild]) == {child: "blocked", grandchild: "blocked"}


def test_recover_host_leaves_heartbeats_alone(store: Store, phase_id: int, spawn: Spawn) -> None:
    stale = running(store, phase_id, elsewhere_token())
    age_heartbeat(store, stale)
    lost = claimed(store, phase_id, dead_token(spawn))
    assert monitor.recover_host(store, actor=ACTOR) == [
        Verdict(lost, 1, State.READY, "supervisor lost")
    ]
    with store.read() as conn:
        assert states_of(conn, [stale]) == {stale: "running"}


# --------------------------------------------------------------------------
# races with supervisors and other monitors


def test_a_verdict_recorded_first_by_the_supervisor_wins(
    store: Store, phase_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Judged stale, but the supervisor recorded done before the monitor wrote: nothing written."""
    job_id = running(store, phase_id, elsewhere_token())
    with store.write() as conn:
        queries.finish(conn, job_id, 1, State.DONE, actor="supervisor", result={"acc": 1.0})
    monkeypatch.setattr(monitor.queries, "stale_running", lambda conn, timeout: [(job_id, 1)])
    found = monitor.run_pass(store, heartbeat_timeout=TIMEOUT, actor=ACTOR)
    assert found.verdicts == []
    assert found.skipped == [monitor.Skipped(job_id, 1, "heartbeat", "done (attempt 1)")]
    with store.read() as conn:
        assert [e["actor"] for e in events_of(conn, job_id)][-1] == "supervisor"


@pytest.mark.parametrize(
    "judged",
    [
        Judged(0, 1, State.RUNNING, stale_after=TIMEOUT),  # a heartbeat arrived
        Judged(0, 2, State.RUNNING),  # another attempt
        Judged(0, 1, State.RUNNING, worker="someone else"),  # another supervisor
        Judged(0, 1, State.QUEUED),  # started meanwhile
    ],
    ids=["heartbeat", "attempt", "worker", "state"],
)
def test_verdicts_are_guarded_by_what_was_judged(
    store: Store, phase_id: int, judged: Judged
) -> None:
    job_id = running(store, phase_id, elsewhere_token())
    judged = Judged(job_id, judged.attempt, judged.state, judged.worker, judged.stale_after)
    with store.write() as conn:
        before = conn.execute(select(func.count()).select_from(events)).scalar_one()
        assert verdicts.crash(conn, judged, actor=ACTOR, reason="heartbeat") is None
        assert not verdicts.release_unstarted(conn, judged, actor=ACTOR, reason="x")
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == before
        assert states_of(conn, [job_id]) == {job_id: "running"}


@pytest.mark.slow
def test_monitors_racing_write_each_verdict_once(store: Store, phase_id: int) -> None:
    """Four monitors judging the same 20 lost jobs at once: one verdict per job, never two."""
    ids = [running(store, phase_id, elsewhere_token(), max_attempts=2) for _ in range(20)]
    age_heartbeat(store, *ids)
    found: list[monitor.Pass] = []
    barrier = threading.Barrier(4)

    def judge() -> None:
        barrier.wait()
        found.append(monitor.run_pass(store, heartbeat_timeout=TIMEOUT, actor=ACTOR))

    threads = [threading.Thread(target=judge) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    judged = sorted(v.job_id for p in found for v in p.verdicts)
    assert judged == ids
    with store.read() as conn:
        for job_id in ids:
            crashes = [e for e in events_of(conn, job_id) if e["to_state"] == "crashed"]
            assert len(crashes) == 1
        assert set(states_of(conn, ids).values()) == {"ready"}
