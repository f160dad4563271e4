"""The contract of jobdb.queries, run on SQLite and on a real PostgreSQL (``store`` fixture)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from jobdb import queries
from jobdb.errors import LostRace
from jobdb.sqltypes import db_now
from jobdb.states import TRANSITIONS, State
from jobdb.store import Store
from tests.factories import (
    attempts,
    attempts_of,
    edges,
    events,
    events_of,
    experiments,
    job_row,
    jobs,
    make_edges,
    make_jobs,
    make_phase,
    make_phase_with_jobs,
    states_of,
)

ACTOR = "tester"


def _one_job_per_state(store: Store, phase_id: int) -> dict[State, int]:
    with store.write() as conn:
        return {state: make_jobs(conn, phase_id, 1, state=state)[0] for state in State}


def _event_count(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def _running(store: Store, phase_id: int, n: int = 1, **columns: Any) -> list[int]:
    """``n`` new jobs claimed and started (attempt 1)."""
    with store.write() as conn:
        ids = make_jobs(conn, phase_id, n, **columns)
        for job_id in ids:
            assert queries.start(conn, job_id, actor=ACTOR) == 1
    return ids


def _assert_aware(value: dt.datetime | None) -> None:
    assert isinstance(value, dt.datetime)
    assert value.tzinfo is not None
    assert value.utcoffset() == dt.timedelta(0)


# --------------------------------------------------------------------------
# guarded transitions


@pytest.mark.parametrize("target", list(State), ids=str)
def test_transition_moves_exactly_the_allowed_states(
    store: Store, phase_id: int, target: State
) -> None:
    by_state = _one_job_per_state(store, phase_id)
    with store.write() as conn:
        moved = queries.transition(
            conn, by_state.values(), target, reason="test", actor=ACTOR, strict=False
        )
    expected = sorted(job_id for state, job_id in by_state.items() if target in TRANSITIONS[state])
    assert moved == expected
    with store.read() as conn:
        now = states_of(conn, by_state.values())
    for state, job_id in by_state.items():
        assert now[job_id] == (target.value if job_id in expected else state.value)


def test_transition_narrowed_by_among_and_attempt(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        ready = make_jobs(conn, phase_id, 1, state=State.READY)
        queued = make_jobs(conn, phase_id, 2, state=State.QUEUED, attempt=1)
        conn.execute(update(jobs).where(jobs.c.id == queued[1]).values(attempt=2))
        moved = queries.transition(
            conn,
            ready + queued,
            State.CANCELLED,
            reason="r",
            actor=ACTOR,
            among=[State.QUEUED],
            attempt=1,
            strict=False,
        )
        assert moved == [queued[0]]
        assert states_of(conn, ready + queued) == {
            ready[0]: "ready",
            queued[0]: "cancelled",
            queued[1]: "queued",
        }


def test_strict_transition_raises_lost_race_and_changes_nothing(
    store: Store, phase_id: int
) -> None:
    with store.write() as conn:
        ready = make_jobs(conn, phase_id, 2, state=State.READY)
        done = make_jobs(conn, phase_id, 1, state=State.DONE)[0]
    events_before = _event_count(store)
    with pytest.raises(LostRace) as info, store.write() as conn:
        queries.transition(conn, [*ready, done], State.QUEUED, reason="claim", actor=ACTOR)
    assert info.value.lost == {done: "done"}
    message = str(info.value)
    assert f"{done} is done" in message
    assert "must be ready" in message
    assert str(ready[0]) not in message
    with store.read() as conn:
        assert states_of(conn, [*ready, done]) == {
            ready[0]: "ready",
            ready[1]: "ready",
            done: "done",
        }
    assert _event_count(store) == events_before


def test_lost_race_names_a_missing_job(store: Store, phase_id: int) -> None:
    with pytest.raises(LostRace, match=r"999999 is missing") as info, store.write() as conn:
        queries.transition(conn, [999_999], State.CANCELLED, reason="r", actor=ACTOR)
    assert info.value.lost == {999_999: None}


def test_lost_race_message_is_capped(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        done = make_jobs(conn, phase_id, 13, state=State.DONE)
    with pytest.raises(LostRace, match=r"\(and 3 more\)") as info, store.write() as conn:
        queries.transition(conn, done, State.QUEUED, reason="r", actor=ACTOR)
    assert set(info.value.lost) == set(done)


# --------------------------------------------------------------------------
# claiming


def test_claim_takes_best_priority_then_oldest(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        ids = make_jobs(conn, phase_id, 6, priority=[0, 5, 0, 5, 9, -1], max_attempts=3)
        make_jobs(conn, phase_id, 2, state=State.WAITING, priority=100)
    with store.write() as conn:
        claimed = queries.claim(conn, 4, actor="dispatcher", executor="local", worker="w1")
    assert [job.id for job in claimed] == [ids[4], ids[1], ids[3], ids[0]]
    assert [job.priority for job in claimed] == [9, 5, 5, 0]
    assert all(job.attempt == 1 and job.max_attempts == 3 for job in claimed)
    assert claimed[0].params == {"index": 4, "seed": claimed[0].params["seed"]}
    assert {job.phase_id for job in claimed} == {phase_id}
    with store.read() as conn:
        for job in claimed:
            row = job_row(conn, job.id)
            assert (row["state"], row["attempt"]) == ("queued", 1)
            assert (row["executor"], row["worker"]) == ("local", "w1")
            _assert_aware(row["queued_at"])
            [attempt] = attempts_of(conn, job.id)
            assert (attempt["number"], attempt["state"]) == (1, "queued")
            assert (attempt["executor"], attempt["worker"]) == ("local", "w1")
            assert attempt["params"] == job.params
            _assert_aware(attempt["queued_at"])
            [event] = events_of(conn, job.id)
            assert (event["from_state"], event["to_state"]) == ("ready", "queued")
            assert (event["reason"], event["actor"]) == ("claimed", "dispatcher")
        assert states_of(conn, [ids[2], ids[5]]) == {ids[2]: "ready", ids[5]: "ready"}
    with store.write() as conn:
        rest = queries.claim(conn, 10, actor="dispatcher")
    assert [job.id for job in rest] == [ids[2], ids[5]]


def test_a_claim_leaves_no_result_behind_as_sql_null(store: Store, phase_id: int) -> None:
    # JSON null would make "has a result" (result IS NOT NULL) true for every claimed job.
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(result={"acc": 1}))
    with store.write() as conn:
        queries.claim(conn, 1, actor=ACTOR)
    with store.read() as conn:
        count = select(func.count()).select_from(jobs).where(jobs.c.result.is_(None))
        assert conn.execute(count).scalar_one() == 1


def test_claim_when_nothing_is_ready_returns_nothing(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        others = [s for s in State if s != State.READY]
        ids = [make_jobs(conn, phase_id, 1, state=s)[0] for s in others]
    with store.write() as conn:
        assert queries.claim(conn, 10, actor=ACTOR) == []
    with store.write() as conn:
        assert queries.claim(conn, 10, actor=ACTOR, job_ids=ids) == []
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(attempts)).scalar_one() == 0
        assert states_of(conn, ids) == {i: s.value for i, s in zip(ids, others, strict=True)}
    assert _event_count(store) == 0


def test_claim_with_filters(store: Store) -> None:
    with store.write() as conn:
        exp_a, phase_a1, a1 = make_phase_with_jobs(conn, 3)
        phase_a2 = make_phase(conn, exp_a, name="eval", position=1)
        a2 = make_jobs(conn, phase_a2, 3)
        _, phase_b, b = make_phase_with_jobs(conn, 3)
    with store.write() as conn:
        got = queries.claim(conn, 10, actor=ACTOR, experiment_ids=[exp_a])
    assert sorted(job.id for job in got) == sorted(a1 + a2)
    assert {job.experiment_id for job in got} == {exp_a}
    with store.write() as conn:
        assert queries.claim(conn, 10, actor=ACTOR, experiment_ids=[exp_a]) == []
        got = queries.claim(conn, 10, actor=ACTOR, phase_ids=[phase_b], job_ids=[b[0], b[2], a1[0]])
    assert [job.id for job in got] == [b[0], b[2]]
    with store.write() as conn:
        assert queries.claim(conn, 10, actor=ACTOR, phase_ids=[phase_a1, phase_a2]) == []
        got = queries.claim(conn, 10, actor=ACTOR, phase_ids=[phase_b])
    assert [job.id for job in got] == [b[1]]


def test_claim_respects_the_limit(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        ids = make_jobs(conn, phase_id, 5)
    with store.write() as conn:
        first = queries.claim(conn, 2, actor=ACTOR)
        second = queries.claim(conn, 2, actor=ACTOR)
        third = queries.claim(conn, 2, actor=ACTOR)
    assert [j.id for j in first + second + third] == ids
    assert [len(first), len(second), len(third)] == [2, 2, 1]


# --------------------------------------------------------------------------
# starting, heartbeats, stale jobs


@pytest.mark.parametrize("state", [State.RUNNING, State.DONE, State.FAILED, State.WAITING])
def test_start_refuses_a_job_that_cannot_start(store: Store, phase_id: int, state: State) -> None:
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1, state=state, attempt=1)
    with pytest.raises(LostRace) as info, store.write() as conn:
        queries.start(conn, job_id, actor=ACTOR, host="h", pid=1)
    assert info.value.lost == {job_id: state.value}
    assert f"{job_id} is {state.value}" in str(info.value)
    with store.read() as conn:
        row = job_row(conn, job_id)
        assert (row["state"], row["attempt"], row["host"]) == (state.value, 1, None)
        assert attempts_of(conn, job_id) == []


def test_start_a_running_job_twice_is_refused(store: Store, phase_id: int) -> None:
    [job_id] = _running(store, phase_id)
    with pytest.raises(LostRace), store.write() as conn:
        queries.start(conn, job_id, actor="second-runner")
    with pytest.raises(LostRace), store.write() as conn:
        queries.start(conn, job_id, actor="second-runner", attempt=1)
    with store.read() as conn:
        assert [a["number"] for a in attempts_of(conn, job_id)] == [1]
        assert [e["to_state"] for e in events_of(conn, job_id)] == ["queued", "running"]


def test_start_a_missing_job_is_refused(store: Store, phase_id: int) -> None:
    with pytest.raises(LostRace, match="is missing"), store.write() as conn:
        queries.start(conn, 424242, actor=ACTOR)


def test_start_from_ready_claims_then_starts(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1)
        attempt = queries.start(
            conn,
            job_id,
            actor="by-hand",
            host="node1",
            pid=4242,
            gpus="0,1",
            work_dir="/w",
            stdout_path="/w/out",
            stderr_path="/w/err",
            params={"lr": 0.1},
        )
    assert attempt == 1
    with store.read() as conn:
        row = job_row(conn, job_id)
        assert (row["state"], row["attempt"], row["host"], row["pid"]) == (
            "running",
            1,
            "node1",
            4242,
        )
        assert (row["gpus"], row["work_dir"]) == ("0,1", "/w")
        assert row["params"] != {"lr": 0.1}, "the scheduled parameters stay the job's identity"
        _assert_aware(row["started_at"])
        _assert_aware(row["heartbeat_at"])
        [att] = attempts_of(conn, job_id)
        assert (att["number"], att["state"], att["host"], att["pid"]) == (
            1,
            "running",
            "node1",
            4242,
        )
        assert (att["stdout_path"], att["params"]) == ("/w/out", {"lr": 0.1})
        _assert_aware(att["started_at"])
        steps = [(e["from_state"], e["to_state"], e["reason"]) for e in events_of(conn, job_id)]
        assert steps == [("ready", "queued", "claimed"), ("queued", "running", "started")]


def test_start_a_queued_job_needs_its_attempt(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1)
        [claimed] = queries.claim(conn, 1, actor=ACTOR)
    with pytest.raises(LostRace, match="on attempt 2"), store.write() as conn:
        queries.start(conn, job_id, actor=ACTOR, attempt=2)
    with store.write() as conn:
        assert queries.start(conn, job_id, actor=ACTOR, attempt=claimed.attempt) == 1
        assert job_row(conn, job_id)["state"] == "running"


def test_heartbeat_stamps_the_database_clock(store: Store, phase_id: int) -> None:
    running = _running(store, phase_id, 2)
    with store.write() as conn:
        [ready] = make_jobs(conn, phase_id, 1, state=State.WAITING)
        past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        conn.execute(update(jobs).where(jobs.c.id.in_(running)).values(heartbeat_at=past))
    with store.write() as conn:
        before = conn.execute(select(db_now())).scalar_one()
        gone = queries.heartbeat(conn, {running[0]: 1, running[1]: 7, ready: 1, 999_999: 1})
        after = conn.execute(select(db_now())).scalar_one()
    assert gone == sorted([running[1], ready, 999_999])
    _assert_aware(before)
    with store.read() as conn:
        fresh = job_row(conn, running[0])["heartbeat_at"]
        stale = job_row(conn, running[1])["heartbeat_at"]
    _assert_aware(fresh)
    assert before - dt.timedelta(seconds=1) <= fresh <= after + dt.timedelta(seconds=1)
    assert stale == past


def test_heartbeat_of_nothing(store: Store) -> None:
    with store.write() as conn:
        assert queries.heartbeat(conn, {}) == []


def test_stale_running_finds_old_heartbeats(store: Store, phase_id: int) -> None:
    old, fresh = _running(store, phase_id, 2)
    with store.write() as conn:
        make_jobs(conn, phase_id, 1, state=State.QUEUED, attempt=1)
        an_hour_ago = conn.execute(select(db_now())).scalar_one() - dt.timedelta(hours=1)
        conn.execute(update(jobs).where(jobs.c.id == old).values(heartbeat_at=an_hour_ago))
    with store.read() as conn:
        assert queries.stale_running(conn, 600) == [(old, 1)]
        assert queries.stale_running(conn, 7200) == []
    time.sleep(0.05)
    with store.read() as conn:
        assert sorted(queries.stale_running(conn, 0)) == [(old, 1), (fresh, 1)]


# --------------------------------------------------------------------------
# finishing: promotion, blocking, retries


def _diamond(store: Store, phase_id: int) -> tuple[int, int, int, int]:
    """a → b, a → c, b → d, c → d; a ready, the rest waiting."""
    with store.write() as conn:
        [a] = make_jobs(conn, phase_id, 1, state=State.READY)
        b, c, d = make_jobs(conn, phase_id, 3, state=State.WAITING)
        make_edges(conn, [(a, b), (a, c), (b, d), (c, d)])
    return a, b, c, d


def _run_to(store: Store, job_id: int, verdict: State, **kwargs: Any) -> queries.Finish:
    with store.write() as conn:
        attempt = queries.start(conn, job_id, actor="runner")
        return queries.finish(conn, job_id, attempt, verdict, actor="runner", **kwargs)


def test_done_promotes_children_only_when_all_parents_are_done(store: Store, phase_id: int) -> None:
    a, b, c, d = _diamond(store, phase_id)
    outcome = _run_to(store, a, State.DONE, exit_code=0, result={"loss": 0.5})
    assert (outcome.state, outcome.promoted, outcome.blocked, outcome.retried) == (
        State.DONE,
        [b, c],
        [],
        False,
    )
    with store.read() as conn:
        assert states_of(conn, [a, b, c, d]) == {a: "done", b: "ready", c: "ready", d: "waiting"}
        row = job_row(conn, a)
        assert (row["exit_code"], row["result"]) == (0, {"loss": 0.5})
        _assert_aware(row["finished_at"])
        [att] = attempts_of(conn, a)
        assert (att["state"], att["exit_code"], att["result"]) == ("done", 0, {"loss": 0.5})
        _assert_aware(att["ended_at"])
        [promotion] = [e for e in events_of(conn, b) if e["to_state"] == "ready"]
        assert (promotion["from_state"], promotion["reason"]) == ("waiting", "parents done")
    assert _run_to(store, b, State.DONE).promoted == []
    with store.read() as conn:
        assert states_of(conn, [d]) == {d: "waiting"}
    assert _run_to(store, c, State.DONE).promoted == [d]
    with store.read() as conn:
        assert states_of(conn, [d]) == {d: "ready"}


def test_failure_without_retry_blocks_every_descendant(store: Store, phase_id: int) -> None:
    a, b, c, d = _diamond(store, phase_id)
    with store.write() as conn:
        e, f = make_jobs(conn, phase_id, 2, state=State.WAITING)  # grandchildren of d
        [unrelated_parent] = make_jobs(conn, phase_id, 1, state=State.READY)
        unrelated, sibling = make_jobs(conn, phase_id, 2, state=State.WAITING)
        make_edges(conn, [(d, e), (e, f), (b, f), (unrelated_parent, unrelated)])
    outcome = _run_to(store, a, State.FAILED, exit_code=3, error="boom")
    assert outcome.state == State.FAILED
    assert outcome.blocked == sorted([b, c, d, e, f])
    assert (outcome.promoted, outcome.retried) == ([], False)
    with store.read() as conn:
        assert states_of(conn, [a, b, c, d, e, f, unrelated_parent, unrelated, sibling]) == {
            a: "failed",
            b: "blocked",
            c: "blocked",
            d: "blocked",
            e: "blocked",
            f: "blocked",
            unrelated_parent: "ready",
            unrelated: "waiting",
            sibling: "waiting",
        }
        for job_id in (b, c, d, e, f):
            [event] = events_of(conn, job_id)
            assert (event["from_state"], event["to_state"]) == ("waiting", "blocked")
            assert event["reason"] == f"parent {a} failed"
            assert event["actor"] == "runner"
        row = job_row(conn, a)
        assert (row["exit_code"], row["error"]) == (3, "boom")
        [att] = attempts_of(conn, a)
        assert (att["state"], att["reason"], att["error"]) == ("failed", "failed", "boom")


@pytest.mark.parametrize("verdict", [State.CRASHED, State.CANCELLED])
def test_crash_or_cancel_without_retry_blocks_too(
    store: Store, phase_id: int, verdict: State
) -> None:
    a, b, c, d = _diamond(store, phase_id)
    outcome = _run_to(store, a, verdict, reason="lost it")
    assert outcome.blocked == [b, c, d]
    with store.read() as conn:
        assert states_of(conn, [a]) == {a: verdict.value}
        assert events_of(conn, d)[-1]["reason"] == f"parent {a} lost it"


def test_failed_and_done_only_finish_a_running_job(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1)
        [claimed] = queries.claim(conn, 1, actor=ACTOR)
    for verdict in (State.DONE, State.FAILED):
        with pytest.raises(LostRace), store.write() as conn:
            queries.finish(conn, job_id, claimed.attempt, verdict, actor=ACTOR)
    with store.write() as conn:
        outcome = queries.finish(conn, job_id, claimed.attempt, State.CRASHED, actor=ACTOR)
    assert outcome.state == State.CRASHED
    with store.read() as conn:
        assert attempts_of(conn, job_id)[0]["state"] == "crashed"


def test_an_attempt_without_a_result_stores_sql_null(store: Store, phase_id: int) -> None:
    """Not the JSON text null: "has a result" is ``result IS NOT NULL`` in plain SQL too."""
    with store.write() as conn:
        without, with_one = make_jobs(conn, phase_id, 2)
    _run_to(store, without, State.CRASHED, exit_code=1)
    _run_to(store, with_one, State.DONE, exit_code=0, result={"loss": 0.5})
    with store.read() as conn:
        for table in (jobs, attempts):
            key = jobs.c.id if table is jobs else attempts.c.job_id
            has_result = select(key).where(table.c.result.is_not(None)).order_by(key)
            assert conn.execute(has_result).scalars().all() == [with_one]


def test_finish_of_an_old_attempt_is_refused(store: Store, phase_id: int) -> None:
    [job_id] = _running(store, phase_id, max_attempts=3)
    with pytest.raises(LostRace, match="on attempt 2"), store.write() as conn:
        queries.finish(conn, job_id, 2, State.DONE, actor=ACTOR)
    with store.read() as conn:
        assert job_row(conn, job_id)["state"] == "running"


def test_retry_puts_the_job_back_and_keeps_the_first_attempt(store: Store, phase_id: int) -> None:
    a, b, c, _ = _diamond(store, phase_id)
    with store.write() as conn:
        conn.execute(update(jobs).where(jobs.c.id == a).values(max_attempts=2))
    outcome = _run_to(store, a, State.FAILED, exit_code=1, error="oops", retry=True)
    assert (outcome.state, outcome.retried, outcome.blocked, outcome.promoted) == (
        State.FAILED,
        True,
        [],
        [],
    )
    with store.read() as conn:
        assert states_of(conn, [a, b, c]) == {a: "ready", b: "waiting", c: "waiting"}
        steps = [(e["from_state"], e["to_state"], e["reason"]) for e in events_of(conn, a)]
        assert steps == [
            ("ready", "queued", "claimed"),
            ("queued", "running", "started"),
            ("running", "failed", "failed"),
            ("failed", "ready", "retry after failed"),
        ]
    with store.write() as conn:
        [again] = queries.claim(conn, 1, actor=ACTOR)
    assert (again.id, again.attempt) == (a, 2)
    with store.read() as conn:
        row = job_row(conn, a)
        # The new attempt starts clean: nothing of attempt 1 stays on the job.
        assert (row["exit_code"], row["error"], row["finished_at"]) == (None, None, None)
        first, second = attempts_of(conn, a)
        assert (first["number"], first["state"], first["exit_code"]) == (1, "failed", 1)
        assert first["error"] == "oops"
        _assert_aware(first["ended_at"])
        assert (second["number"], second["state"], second["ended_at"]) == (2, "queued", None)
    with store.write() as conn:
        assert queries.start(conn, a, actor="runner") == 2
        assert queries.finish(conn, a, 2, State.DONE, actor="runner").promoted == [b, c]


def test_release_gives_queued_jobs_back(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        ids = make_jobs(conn, phase_id, 3)
        queries.claim(conn, 2, actor="dispatcher")
    with store.write() as conn:
        released = queries.release(conn, ids[:2], actor="dispatcher", reason="sbatch failed")
    assert released == ids[:2]
    with store.read() as conn:
        assert states_of(conn, ids) == dict.fromkeys(ids, "ready")
        [att] = attempts_of(conn, ids[0])
        assert (att["state"], att["reason"]) == ("released", "sbatch failed")
        _assert_aware(att["ended_at"])
        assert job_row(conn, ids[0])["attempt"] == 1
        assert events_of(conn, ids[0])[-1]["reason"] == "sbatch failed"
    with pytest.raises(LostRace, match="is ready"), store.write() as conn:
        queries.release(conn, [ids[0]], actor="x", reason="y")
    with store.write() as conn:
        again = queries.claim(conn, 3, actor="dispatcher")
    assert [(j.id, j.attempt) for j in again] == [(ids[0], 2), (ids[1], 2), (ids[2], 1)]
    with store.write() as conn:
        queries.start(conn, ids[0], actor="runner", attempt=2)
    with pytest.raises(LostRace, match="is running"), store.write() as conn:
        queries.release(conn, [ids[0]], actor="x", reason="y")


def test_record_submission(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1)
        [claimed] = queries.claim(conn, 1, actor=ACTOR, executor="slurm")
        queries.record_submission(
            conn, job_id, claimed.attempt, external_id="123_4", array_id="123"
        )
    with store.read() as conn:
        assert job_row(conn, job_id)["external_id"] == "123_4"
        [att] = attempts_of(conn, job_id)
        assert (att["external_id"], att["array_id"]) == ("123_4", "123")
    with pytest.raises(LostRace), store.write() as conn:
        queries.record_submission(conn, job_id, 5, external_id="999")


def test_promote_waiting_readies_roots_and_children_of_done(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [root] = make_jobs(conn, phase_id, 1, state=State.WAITING)
        [done] = make_jobs(conn, phase_id, 1, state=State.DONE)
        child_of_done, child_of_root = make_jobs(conn, phase_id, 2, state=State.WAITING)
        make_edges(conn, [(done, child_of_done), (root, child_of_root)])
        promoted = queries.promote_waiting(conn, actor=ACTOR)
    assert promoted == sorted([root, child_of_done])
    with store.read() as conn:
        assert states_of(conn, [child_of_root]) == {child_of_root: "waiting"}


# --------------------------------------------------------------------------
# events (a trigger: per row on SQLite, per statement on PostgreSQL)


def test_every_state_change_writes_exactly_one_event(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        ids = make_jobs(conn, phase_id, 5, state=State.WAITING)
    assert _event_count(store) == 0  # inserts write no events
    with store.write() as conn:
        # One statement moving three jobs: three events, even from a statement-level trigger.
        queries.transition(conn, ids[:3], State.READY, reason="go", actor="a1")
        # Updates that do not change the state write nothing.
        conn.execute(update(jobs).where(jobs.c.id.in_(ids)).values(priority=7))
        conn.execute(update(jobs).where(jobs.c.id == ids[3]).values(state="waiting"))
    with store.read() as conn:
        rows = list(conn.execute(select(events).order_by(events.c.id)).mappings())
    assert [r["job_id"] for r in rows] == ids[:3]
    for row in rows:
        assert (row["from_state"], row["to_state"], row["reason"], row["actor"]) == (
            "waiting",
            "ready",
            "go",
            "a1",
        )
        _assert_aware(row["at"])
    with store.write() as conn:
        now = conn.execute(select(db_now())).scalar_one()
    assert all(abs(now - row["at"]) < dt.timedelta(minutes=5) for row in rows)


def test_a_whole_life_is_in_the_event_log(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1, state=State.WAITING, max_attempts=2)
        queries.promote_waiting(conn, actor="scheduler")
    _run_to(store, job_id, State.CRASHED, reason="heartbeat lost", retry=True)
    _run_to(store, job_id, State.DONE)
    with store.write() as conn:
        queries.transition(conn, [job_id], State.WAITING, reason="reset", actor="user")
    with store.read() as conn:
        log = [
            (e["from_state"], e["to_state"], e["reason"], e["actor"])
            for e in events_of(conn, job_id)
        ]
        stamps = [e["at"] for e in events_of(conn, job_id)]
    assert log == [
        ("waiting", "ready", "parents done", "scheduler"),
        ("ready", "queued", "claimed", "runner"),
        ("queued", "running", "started", "runner"),
        ("running", "crashed", "heartbeat lost", "runner"),
        ("crashed", "ready", "retry after heartbeat lost", "runner"),
        ("ready", "queued", "claimed", "runner"),
        ("queued", "running", "started", "runner"),
        ("running", "done", "done", "runner"),
        ("done", "waiting", "reset", "user"),
    ]
    for stamp in stamps:
        _assert_aware(stamp)
    assert stamps == sorted(stamps)


def test_a_cascade_writes_one_event_per_blocked_job(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [root] = make_jobs(conn, phase_id, 1)
        children = make_jobs(conn, phase_id, 200, state=State.WAITING)
        make_edges(conn, [(root, child) for child in children])
    outcome = _run_to(store, root, State.FAILED)
    assert outcome.blocked == children
    with store.read() as conn:
        rows = conn.execute(
            select(events.c.job_id, func.count())
            .where(events.c.to_state == "blocked")
            .group_by(events.c.job_id)
        ).all()
    assert sorted(rows) == [(child, 1) for child in children]


# --------------------------------------------------------------------------
# constraints and types


def test_check_constraint_rejects_an_unknown_state(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1)
    with pytest.raises(IntegrityError), store.write() as conn:
        make_jobs(conn, phase_id, 1, state="paused")
    with pytest.raises(IntegrityError), store.write() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(state="paused"))
    with pytest.raises(IntegrityError), store.write() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(attempt=-1))
    with pytest.raises(IntegrityError), store.write() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(max_attempts=0))
    with store.read() as conn:
        row = job_row(conn, job_id)
    assert (row["state"], row["attempt"], row["max_attempts"]) == ("ready", 0, 1)
    assert _event_count(store) == 0


def test_edges_reject_self_edges_duplicates_and_missing_jobs(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        a, b = make_jobs(conn, phase_id, 2, state=State.WAITING)
        make_edges(conn, [(a, b)])
    with pytest.raises(IntegrityError), store.write() as conn:
        make_edges(conn, [(a, a)])
    with pytest.raises(IntegrityError), store.write() as conn:
        make_edges(conn, [(a, b)])
    with pytest.raises(IntegrityError), store.write() as conn:
        make_edges(conn, [(a, 987_654)])
    with store.read() as conn:
        assert conn.execute(select(edges.c.parent_id, edges.c.child_id)).all() == [(a, b)]


def test_jobs_are_unique_per_phase_and_params_hash(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1)
        params_hash = job_row(conn, job_id)["params_hash"]
    with pytest.raises(IntegrityError), store.write() as conn:
        make_jobs(conn, phase_id, 1, params_hash=params_hash)


def test_deleting_an_experiment_cascades(store: Store) -> None:
    with store.write() as conn:
        exp, _, ids = make_phase_with_jobs(conn, 3)
        make_edges(conn, [(ids[0], ids[1])])
        queries.claim(conn, 1, actor=ACTOR)
    with store.write() as conn:
        conn.execute(experiments.delete().where(experiments.c.id == exp))
    with store.read() as conn:
        for table in (jobs, edges, attempts, events):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0


def test_timestamps_are_timezone_aware(store: Store, phase_id: int) -> None:
    [job_id] = _running(store, phase_id)
    with store.write() as conn:
        queries.finish(conn, job_id, 1, State.DONE, actor=ACTOR)
    with store.read() as conn:
        row = job_row(conn, job_id)
        for column in ("created_at", "updated_at", "queued_at", "started_at", "finished_at"):
            _assert_aware(row[column])
        _assert_aware(row["heartbeat_at"])
        [att] = attempts_of(conn, job_id)
        for column in ("queued_at", "started_at", "ended_at"):
            _assert_aware(att[column])
        for event in events_of(conn, job_id):
            _assert_aware(event["at"])
        created = conn.execute(select(experiments.c.created_at)).scalars().all()
        now = conn.execute(select(db_now())).scalar_one()
    for stamp in created:
        _assert_aware(stamp)
    _assert_aware(now)
    assert row["created_at"] <= row["queued_at"] <= row["started_at"] <= row["finished_at"] <= now
    assert abs(dt.datetime.now(dt.UTC) - now) < dt.timedelta(minutes=5)


def test_aware_datetimes_round_trip_and_naive_ones_are_refused(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1)
        plus_two = dt.timezone(dt.timedelta(hours=2))
        stamp = dt.datetime(2030, 5, 6, 9, 30, 15, 250_000, tzinfo=plus_two)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(queued_at=stamp))
        read = job_row(conn, job_id)["queued_at"]
    assert read == stamp
    assert read.utcoffset() == dt.timedelta(0)
    with pytest.raises(Exception, match="naive datetime"), store.write() as conn:
        naive = dt.datetime(2030, 5, 6, 9, 30)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(queued_at=naive))


def test_json_params_round_trip(store: Store, phase_id: int) -> None:
    params = {"lr": 0.001, "layers": [64, 32], "name": "ünïcode", "nested": {"a": None}}
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(params=params))
    with store.write() as conn:
        [claimed] = queries.claim(conn, 1, actor=ACTOR)
    assert claimed.params == params
    with store.read() as conn:
        assert attempts_of(conn, job_id)[0]["params"] == params


def test_insert_without_state_defaults_to_waiting(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        experiment_id = job_row(conn, make_jobs(conn, phase_id, 1)[0])["experiment_id"]
        job_id = conn.execute(
            insert(jobs)
            .values(experiment_id=experiment_id, phase_id=phase_id, params={}, params_hash="x")
            .returning(jobs.c.id)
        ).scalar_one()
        row = job_row(conn, job_id)
    assert (row["state"], row["attempt"], row["max_attempts"], row["priority"]) == (
        "waiting",
        0,
        1,
        0,
    )


def test_two_parents_finishing_at_once_still_promote_their_child(
    store: Store, phase_id: int
) -> None:
    """The second parent's promotion must see the first one done, whoever commits first.

    The first parent's transaction stays open after its promotion; the second
    finishes meanwhile. On PostgreSQL (read committed) the second used to see
    the first still running and promoted nothing: the child waited forever.
    """
    with store.write() as conn:
        a, b, child = make_jobs(conn, phase_id, 3, state=State.WAITING)
        make_edges(conn, [(a, child), (b, child)])
        for parent in (a, b):
            conn.execute(update(jobs).where(jobs.c.id == parent).values(state="ready"))
            queries.start(conn, parent, actor=ACTOR)
    first_promoted = threading.Event()
    second_started = threading.Event()
    promoted: dict[int, list[int]] = {}

    def finish(parent: int, after: threading.Event | None, then: threading.Event) -> None:
        if after is not None:
            after.wait(10)
            then.set()  # about to finish while the other transaction is open
        with store.write() as conn:
            promoted[parent] = queries.finish(conn, parent, 1, State.DONE, actor=ACTOR).promoted
            if after is None:
                then.set()
                second_started.wait(10)
                time.sleep(0.3)  # let the other one reach its promotion first

    first = threading.Thread(target=finish, args=(a, None, first_promoted))
    second = threading.Thread(target=finish, args=(b, first_promoted, second_started))
    first.start()
    second.start()
    first.join(30)
    second.join(30)
    assert sorted(promoted[a] + promoted[b]) == [child]
    with store.read() as conn:
        assert states_of(conn, [child]) == {child: "ready"}
