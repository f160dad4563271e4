"""Reset and cancel (jobdb.resetting over jobdb.queries.reset) on SQLite and PostgreSQL.

Graphs are built with the factories and driven through the real queries
(claim, start, finish), so the states, attempts and events are the ones
jobdb itself writes. Running jobs get a real ``sleep`` process in its own
process group, recorded the way a supervisor records it, so the tests see
reset and cancel stop it.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
from sqlalchemy import Connection, func, select, update

from jobdb import queries, resetting
from jobdb.errors import BadInput, LostRace, NotFound
from jobdb.queries import reset as rq
from jobdb.queries.core import _transition_statement
from jobdb.resetting import Change, NeedsCascade
from jobdb.selectors import JobFilter
from jobdb.states import State
from jobdb.store import Store
from tests.factories import (
    attempts,
    attempts_of,
    events,
    events_of,
    job_row,
    jobs,
    make_edges,
    make_experiment,
    make_jobs,
    make_phase,
    running_program,
    states_of,
)

ACTOR = "tester"


def ids(*job_ids: int) -> JobFilter:
    return JobFilter(ids=job_ids)


def run_to(store: Store, job_id: int, verdict: State = State.DONE, **kwargs: Any) -> None:
    """Claim, start and finish one ready job the way a runner does."""
    with store.write() as conn:
        attempt = queries.start(conn, job_id, actor="runner")
        queries.finish(conn, job_id, attempt, verdict, actor="runner", **kwargs)


def diamond(store: Store, phase_id: int) -> tuple[int, int, int, int]:
    """a → b, a → c, b → d, c → d, all run to done with a result each."""
    with store.write() as conn:
        [a] = make_jobs(conn, phase_id, 1, state=State.READY)
        b, c, d = make_jobs(conn, phase_id, 3, state=State.WAITING)
        make_edges(conn, [(a, b), (a, c), (b, d), (c, d)])
    for job_id in (a, b, c, d):
        run_to(store, job_id, result={"loss": job_id / 10})
    return a, b, c, d


def whole_database(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of jobs, attempts and events, to compare before and after."""
    with store.read() as conn:
        return {
            table.name: sorted(map(tuple, conn.execute(select(table))), key=repr)
            for table in (jobs, attempts, events)
        }


def in_order(conn: Connection, job_ids: list[int]) -> list[str]:
    """The states of ``job_ids``, in that order."""
    found = states_of(conn, job_ids)
    return [found[job_id] for job_id in job_ids]


def changed(outcome: resetting.Outcome) -> dict[tuple[str, str], int]:
    """(before, after) → jobs, over all phases, for the jobs that moved."""
    found: dict[tuple[str, str], int] = {}
    for c in outcome.changes:
        if c.before != c.after:
            found[(c.before, c.after)] = found.get((c.before, c.after), 0) + c.count
    return found


# --------------------------------------------------------------------------
# reset


def test_reset_cascade_on_a_diamond(store: Store, phase_id: int) -> None:
    a, b, c, d = diamond(store, phase_id)
    with store.read() as conn:
        attempts_before = {j: list(attempts_of(conn, j)) for j in (a, b, c, d)}
    outcome = resetting.reset(store, ids(a), cascade=True, actor=ACTOR)
    assert changed(outcome) == {("done", "ready"): 1, ("done", "waiting"): 3}
    assert outcome.stopped == []
    with store.read() as conn:
        assert in_order(conn, [a, b, c, d]) == ["ready", "waiting", "waiting", "waiting"]
        for job_id in (a, b, c, d):
            row = job_row(conn, job_id)
            assert (row["result"], row["exit_code"], row["finished_at"]) == (None, None, None)
            assert row["attempt"] == 1  # numbering goes on: attempt 2 is next
            # The attempt history is untouched: still done, still with its result.
            assert list(attempts_of(conn, job_id)) == attempts_before[job_id]
            assert attempts_before[job_id][0]["result"] == {"loss": job_id / 10}
            last = events_of(conn, job_id)[-1]
            assert last["from_state"] == "done"
            assert last["actor"] == ACTOR
        assert events_of(conn, a)[-1]["reason"].startswith("reset by ")
        # d is below both b and c but is reset once: one event, not two.
        assert [e["to_state"] for e in events_of(conn, d)][-2:] == ["done", "waiting"]
        assert events_of(conn, d)[-1]["reason"].endswith("an ancestor was reset")
    # The graph runs again from the top.
    run_to(store, a)
    with store.read() as conn:
        assert states_of(conn, [b, c, d]) == {b: "ready", c: "ready", d: "waiting"}


def test_reset_without_cascade_refuses_and_changes_nothing(store: Store, phase_id: int) -> None:
    a, b, _, _ = diamond(store, phase_id)
    before = whole_database(store)
    with pytest.raises(NeedsCascade) as refused:
        resetting.reset(store, ids(a), cascade=False, actor=ACTOR)
    assert "3 job(s) below the selection have run" in str(refused.value)
    assert refused.value.exit_code == 2
    assert [(c.phase, c.before, c.count) for c in refused.value.would_touch] == [
        ("train", "done", 3)
    ]
    with pytest.raises(NeedsCascade, match="1 job"):
        resetting.preview_reset(store, ids(b), cascade=False)
    assert whole_database(store) == before


def test_preview_changes_nothing_and_says_what_reset_does(store: Store, phase_id: int) -> None:
    a, b, c, d = diamond(store, phase_id)
    before = whole_database(store)
    preview = resetting.preview_reset(store, ids(b), cascade=True)
    assert whole_database(store) == before
    assert preview.roots == [b]
    assert preview.ids == {b, d}
    assert preview.nodes is not None
    assert preview.nodes[b].children == (d,)
    assert (preview.nodes[b].before, preview.nodes[b].after) == ("done", "ready")
    assert (preview.nodes[d].before, preview.nodes[d].after) == ("done", "waiting")
    assert preview.changes == [
        Change(preview.changes[0].experiment, "train", "done", "waiting", 1),
        Change(preview.changes[0].experiment, "train", "done", "ready", 1),
    ]
    outcome = resetting.reset(store, ids(b), cascade=True, expect=preview.ids)
    assert outcome.changes == preview.changes
    with store.read() as conn:
        assert states_of(conn, [a, b, c, d]) == {a: "done", b: "ready", c: "done", d: "waiting"}


def test_a_failed_parent_blocks_its_subtree_and_a_reset_releases_it(
    store: Store, phase_id: int
) -> None:
    with store.write() as conn:
        [a] = make_jobs(conn, phase_id, 1, state=State.READY)
        b, c = make_jobs(conn, phase_id, 2, state=State.WAITING)
        make_edges(conn, [(a, b), (b, c)])
    run_to(store, a, State.FAILED, exit_code=1, error="boom")
    with store.read() as conn:
        assert states_of(conn, [a, b, c]) == {a: "failed", b: "blocked", c: "blocked"}
    # Blocked jobs below need no --cascade: they have nothing to lose.
    outcome = resetting.reset(store, ids(a), cascade=False, actor=ACTOR)
    assert changed(outcome) == {("failed", "ready"): 1, ("blocked", "waiting"): 2}
    with store.read() as conn:
        assert states_of(conn, [a, b, c]) == {a: "ready", b: "waiting", c: "waiting"}
        assert job_row(conn, a)["error"] is None
        assert attempts_of(conn, a)[0]["error"] == "boom"
        assert [e["to_state"] for e in events_of(conn, c)] == ["blocked", "waiting"]
    run_to(store, a)
    with store.read() as conn:
        assert states_of(conn, [b]) == {b: "ready"}


def test_jobs_below_another_failed_parent_stay_blocked(store: Store, phase_id: int) -> None:
    """d has parents b and c; c failed for good, so resetting b must not release d."""
    with store.write() as conn:
        b, c = make_jobs(conn, phase_id, 2, state=State.READY)
        [d] = make_jobs(conn, phase_id, 1, state=State.WAITING)
        make_edges(conn, [(b, d), (c, d)])
    run_to(store, b)
    run_to(store, c, State.FAILED)
    with store.read() as conn:
        assert states_of(conn, [b, c, d]) == {b: "done", c: "failed", d: "blocked"}
        events_before = len(events_of(conn, d))
    outcome = resetting.reset(store, ids(b), cascade=False, actor=ACTOR)
    assert changed(outcome) == {("done", "ready"): 1}
    with store.read() as conn:
        assert states_of(conn, [b, c, d]) == {b: "ready", c: "failed", d: "blocked"}
        assert len(events_of(conn, d)) == events_before
    # A job done under a parent that failed later is reset to blocked, through waiting.
    with store.write() as conn:
        [e] = make_jobs(conn, phase_id, 1, state=State.DONE, attempt=1)
        make_edges(conn, [(c, e)])
    resetting.reset(store, ids(e), cascade=False, actor=ACTOR)
    with store.read() as conn:
        assert [x["to_state"] for x in events_of(conn, e)] == ["waiting", "blocked"]


def test_a_root_with_a_parent_not_done_waits(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [a] = make_jobs(conn, phase_id, 1, state=State.READY)
        [b] = make_jobs(conn, phase_id, 1, state=State.FAILED, attempt=1)
        make_edges(conn, [(a, b)])
    resetting.reset(store, ids(b), cascade=False, actor=ACTOR)
    with store.read() as conn:
        assert states_of(conn, [a, b]) == {a: "ready", b: "waiting"}


def test_reset_three_phases_stops_running_descendants(store: Store) -> None:
    """pre → train → eval; train done, one eval running (a real process), one queued."""
    with store.write() as conn:
        exp = make_experiment(conn)
        pre, train, evals = (make_phase(conn, exp, name, i) for i, name in enumerate("abc"))
        [p] = make_jobs(conn, pre, 1, state=State.READY)
        t1, t2 = make_jobs(conn, train, 2, state=State.WAITING)
        e1, e2 = make_jobs(conn, evals, 2, state=State.WAITING)
        make_edges(conn, [(p, t1), (p, t2), (t1, e1), (t2, e2)])
    for job_id in (p, t1, t2):
        run_to(store, job_id, result={"acc": 0.9})
    with store.write() as conn:
        queries.claim(conn, 1, actor="dispatcher", job_ids=[e2], executor="local")
    with running_program(store, e1) as proc:
        with pytest.raises(NeedsCascade) as refused:
            resetting.reset(store, JobFilter(phases=("a",)), cascade=False)
        assert {(c.phase, c.before) for c in refused.value.would_touch} == {
            ("b", "done"),
            ("c", "running"),
            ("c", "queued"),
        }
        assert proc.poll() is None  # a refusal stops nothing
        outcome = resetting.reset(store, JobFilter(phases=("a",)), cascade=True, grace_s=2)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    assert changed(outcome) == {
        ("done", "ready"): 1,
        ("done", "waiting"): 2,
        ("queued", "waiting"): 1,
        ("running", "waiting"): 1,
    }
    stops = {s.job_id: (s.state, s.outcome) for s in outcome.stopped}
    assert stops == {e1: ("running", "terminated"), e2: ("queued", "not started")}
    with store.read() as conn:
        assert in_order(conn, [p, t1, t2, e1, e2]) == [
            "ready",
            "waiting",
            "waiting",
            "waiting",
            "waiting",
        ]
        assert [e["to_state"] for e in events_of(conn, e1)][-2:] == ["cancelled", "waiting"]
        assert events_of(conn, e1)[-2]["reason"].startswith("reset by ")
        [attempt] = attempts_of(conn, e1)
        assert (attempt["state"], attempt["ended_at"] is not None) == ("cancelled", True)
        row = job_row(conn, e1)
        assert (row["pid"], row["host"], row["started_at"]) == (None, None, None)
        # The supervisor's next heartbeat learns that its attempt is over.
        assert queries.heartbeat(conn, {e1: 1}) == [e1]


def test_a_running_job_on_another_host_is_left_to_its_supervisor(
    store: Store, phase_id: int
) -> None:
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1)
        queries.start(conn, job_id, actor="runner", host="elsewhere.example", pid=4242)
    outcome = resetting.reset(store, ids(job_id), cascade=False)
    [stop] = outcome.stopped
    assert (stop.outcome, stop.host) == ("supervisor", "elsewhere.example")
    assert "heartbeat" in stop.detail


def test_selectors_pick_the_roots(store: Store) -> None:
    with store.write() as conn:
        exp = make_experiment(conn, "sel")
        train, other = make_phase(conn, exp, "train"), make_phase(conn, exp, "other", 1)
        fast, slow = make_jobs(conn, train, 2, state=State.FAILED, attempt=1)
        [done] = make_jobs(conn, train, 1, state=State.DONE, attempt=1)
        [elsewhere] = make_jobs(conn, other, 1, state=State.FAILED, attempt=1)
        conn.execute(update(jobs).where(jobs.c.id == fast).values(params={"lr": 0.1}))
    by_where = resetting.preview_reset(store, JobFilter.from_cli(where=["lr=0.1"]), cascade=False)
    assert by_where.roots == [fast]
    by_phase = resetting.preview_reset(
        store, JobFilter.from_cli(phases=["train"], states=["failed"]), cascade=False
    )
    assert by_phase.roots == [fast, slow]
    by_state = resetting.preview_reset(
        store, JobFilter.from_cli(experiments=["sel"], states=["failed"]), cascade=False
    )
    assert by_state.roots == [fast, slow, elsewhere]
    resetting.reset(store, JobFilter.from_cli(phases=["train"], states=["failed"]), cascade=False)
    with store.read() as conn:
        assert in_order(conn, [fast, slow, done, elsewhere]) == ["ready", "ready", "done", "failed"]


def test_bad_selections_are_bad_input(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        [job_id] = make_jobs(conn, phase_id, 1, state=State.DONE)
    with pytest.raises(BadInput, match="say which jobs"):
        resetting.reset(store, JobFilter(), cascade=False)
    with pytest.raises(NotFound, match="no job with id 999999"):
        resetting.reset(store, ids(job_id, 999_999), cascade=False)
    with pytest.raises(BadInput, match="no jobs match"):
        resetting.reset(store, JobFilter(ids=(job_id,), states=(State.FAILED,)), cascade=False)
    with pytest.raises(BadInput, match=r"nothing to cancel.*1 done"):
        resetting.cancel(store, ids(job_id))


def test_results_missing_from_the_attempts_are_archived_first(store: Store, phase_id: int) -> None:
    """A job row written without its attempt row (an import) keeps its outcome in history."""
    with store.write() as conn:
        [job_id] = make_jobs(
            conn, phase_id, 1, state=State.DONE, attempt=1, result={"acc": 1.0}, exit_code=0
        )
    outcome = resetting.reset(store, ids(job_id), cascade=False)
    assert outcome.archived == 1
    with store.read() as conn:
        [attempt] = attempts_of(conn, job_id)
        assert (attempt["number"], attempt["state"], attempt["result"]) == (1, "done", {"acc": 1.0})
        assert attempt["exit_code"] == 0
        assert job_row(conn, job_id)["result"] is None
        n_attempts = conn.execute(select(func.count()).select_from(attempts)).scalar_one()
    # A second reset finds nothing to archive and deletes nothing.
    run_to(store, job_id, result={"acc": 0.5})
    assert resetting.reset(store, ids(job_id), cascade=False).archived == 0
    with store.read() as conn:
        assert [a["result"] for a in attempts_of(conn, job_id)] == [{"acc": 1.0}, {"acc": 0.5}]
        assert conn.execute(select(func.count()).select_from(attempts)).scalar_one() == (
            n_attempts + 1
        )


# --------------------------------------------------------------------------
# lost races


def test_a_stale_plan_loses_the_race_and_changes_nothing(store: Store, phase_id: int) -> None:
    """The plan says running; the job finished meanwhile: LostRace, rolled back."""
    with store.write() as conn:
        [parent] = make_jobs(conn, phase_id, 1, state=State.DONE, attempt=1)
        [child] = make_jobs(conn, phase_id, 1, state=State.READY)
        make_edges(conn, [(parent, child)])
        attempt = queries.start(conn, child, actor="runner")
        stale = rq.snapshot(conn, select(jobs.c.id).where(jobs.c.id == parent))
    plan = rq.ResetPlan(
        cancel=[m for m in stale.below if m.state == State.RUNNING],
        roots_ready=[parent],
        below_waiting=[child],
    )
    with store.write() as conn:
        queries.finish(conn, child, attempt, State.DONE, actor="runner")
    before = whole_database(store)
    with pytest.raises(LostRace, match="must be queued or running") as lost:
        with store.write() as conn:
            rq.apply_reset(conn, plan, actor=ACTOR, reason="test")
    assert lost.value.lost == {child: "done"}
    assert whole_database(store) == before


def test_a_selection_that_changed_since_the_preview_is_refused(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        a, b = make_jobs(conn, phase_id, 2, state=State.FAILED, attempt=1)
    preview = resetting.preview_reset(store, JobFilter(states=(State.FAILED,)), cascade=False)
    with store.write() as conn:
        [c] = make_jobs(conn, phase_id, 1, state=State.FAILED, attempt=1)
    before = whole_database(store)
    with pytest.raises(LostRace, match="changed since the preview") as lost:
        resetting.reset(store, JobFilter(states=(State.FAILED,)), cascade=False, expect=preview.ids)
    assert lost.value.lost == {c: "failed"}
    assert whole_database(store) == before
    assert preview.ids == {a, b}


# --------------------------------------------------------------------------
# cancel


def test_cancel_stops_the_program_and_blocks_descendants(store: Store, phase_id: int) -> None:
    with store.write() as conn:
        run_me, idle = make_jobs(conn, phase_id, 2, state=State.READY)
        below_run, below_idle, grandchild = make_jobs(conn, phase_id, 3, state=State.WAITING)
        [finished] = make_jobs(conn, phase_id, 1, state=State.DONE, attempt=1)
        make_edges(conn, [(run_me, below_run), (idle, below_idle), (below_idle, grandchild)])
    selection = ids(run_me, idle, finished)
    with running_program(store, run_me) as proc:
        preview = resetting.preview_cancel(store, selection)
        assert preview.ids == {run_me, idle, below_run, below_idle, grandchild}
        assert [(c.before, c.count) for c in preview.skipped] == [("done", 1)]
        outcome = resetting.cancel(store, selection, actor=ACTOR, expect=preview.ids, grace_s=2)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    assert changed(outcome) == {
        ("ready", "cancelled"): 1,
        ("running", "cancelled"): 1,
        ("waiting", "blocked"): 3,
    }
    assert [(s.job_id, s.outcome) for s in outcome.stopped] == [(run_me, "terminated")]
    with store.read() as conn:
        assert in_order(conn, [run_me, idle, below_run, below_idle, grandchild, finished]) == [
            "cancelled",
            "cancelled",
            "blocked",
            "blocked",
            "blocked",
            "done",
        ]
        assert attempts_of(conn, run_me)[0]["state"] == "cancelled"
        assert events_of(conn, grandchild)[-1]["reason"].startswith("parent cancelled by ")
    # A reset of the cancelled job releases what its cancel blocked.
    resetting.reset(store, ids(idle), cascade=False)
    with store.read() as conn:
        assert in_order(conn, [idle, below_idle, grandchild]) == ["ready", "waiting", "waiting"]


def test_every_change_is_an_event(store: Store, phase_id: int) -> None:
    a, b, c, d = diamond(store, phase_id)

    def count(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    with store.read() as conn:
        before = count(conn)
    resetting.reset(store, ids(a), cascade=True)
    resetting.cancel(store, ids(b))
    with store.read() as conn:
        # 4 reset; b cancelled (d is waiting below it: blocked).
        assert count(conn) == before + 4 + 2
        assert in_order(conn, [a, b, c, d]) == ["ready", "cancelled", "waiting", "blocked"]


# --------------------------------------------------------------------------
# large sets and plans


def test_a_large_selection_is_one_statement_per_move(store: Store, phase_id: int) -> None:
    """12,000 failed jobs, each with a blocked child: more ids than SQLite's variable limit."""
    n = 12_000
    with store.write() as conn:
        parents = make_jobs(conn, phase_id, n, state=State.FAILED, attempt=1)
        children = make_jobs(conn, phase_id, n, state=State.BLOCKED)
        make_edges(conn, zip(parents, children, strict=True))
    outcome = resetting.reset(store, JobFilter(states=(State.FAILED,)), cascade=False)
    assert changed(outcome) == {("failed", "ready"): n, ("blocked", "waiting"): n}
    with store.read() as conn:
        counts = dict(conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all())
    assert counts == {"ready": n, "waiting": n}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_moves_jobs_by_primary_key_not_by_state(store: Store) -> None:
    """Without statistics SQLite would walk the state index; the ``+state`` hint prevents it."""
    statement = _transition_statement("waiting", ("done", "failed"), False, ()).statement
    with store.read() as conn:
        sql = str(statement.compile(conn))
        explained = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", (None,) * sql.count("?"))
        plan = " ".join(row[3] for row in explained)
    assert "USING INTEGER PRIMARY KEY" in plan
    assert "ix_jobs_claim" not in plan
