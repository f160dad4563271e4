"""``jobdb reset`` and ``jobdb cancel`` as a user types them (a subprocess), on both backends.

The jobs are put in place in-process with the factories and the real
queries; what the command changed is read back from the database, what it
said from its output. Each test asks the command several things, because a
subprocess costs about a second.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import URL

from jobdb import queries
from jobdb.states import State
from jobdb.store import Store
from tests.acceptance.cli import db_arg, jobdb
from tests.factories import (
    attempts,
    events,
    job_row,
    jobs,
    make_edges,
    make_experiment,
    make_jobs,
    make_phase,
    running_program,
    states_of,
)

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def run_to_done(store: Store, job_id: int) -> None:
    with store.write() as conn:
        attempt = queries.start(conn, job_id, actor="runner")
        queries.finish(conn, job_id, attempt, State.DONE, actor="runner", result={"acc": 0.5})


def pipeline(store: Store) -> dict[str, list[int]]:
    """Experiment ``demo``: pre (1) → train (lr 0.1, 0.01) → eval (one per train), all done."""
    with store.write() as conn:
        exp = make_experiment(conn, "demo")
        phases = {name: make_phase(conn, exp, name, i) for i, name in enumerate(("pre", "train"))}
        phases["eval"] = make_phase(conn, exp, "eval", 2)
        made = {
            "pre": make_jobs(conn, phases["pre"], 1),
            "train": make_jobs(conn, phases["train"], 2, state=State.WAITING),
            "eval": make_jobs(conn, phases["eval"], 2, state=State.WAITING),
        }
        for job_id, lr in zip(made["train"], (0.1, 0.01), strict=True):
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(params={"lr": lr}))
        (pre,), (t1, t2), (e1, e2) = made["pre"], made["train"], made["eval"]
        make_edges(conn, [(pre, t1), (pre, t2), (t1, e1), (t2, e2)])
    for job_id in (pre, t1, t2, e1, e2):
        run_to_done(store, job_id)
    return made


def table_counts(store: Store) -> tuple[int, int, int, tuple[Any, ...]]:
    """Rows in jobs/attempts/events and every job's (id, state): a cheap "unchanged" check."""
    with store.read() as conn:
        n = [
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (jobs, attempts, events)
        ]
        rows = tuple(conn.execute(select(jobs.c.id, jobs.c.state).order_by(jobs.c.id)))
    return n[0], n[1], n[2], rows


def test_reset_previews_refuses_without_a_terminal_and_resets_with_yes(
    store: Store, db_url: URL, tmp_path: Path
) -> None:
    made = pipeline(store)
    (pre,), (t1, _), (e1, _) = made["pre"], made["train"], made["eval"]
    db = ["--db", db_arg(db_url)]
    before = table_counts(store)

    asked = jobdb("reset", str(t1), "--cascade", *db, cwd=tmp_path, check=2)
    assert f"job {t1} train done → ready" in asked.stdout
    assert f"job {e1} eval done → waiting" in asked.stdout
    assert "no terminal to ask: add --yes" in asked.stderr

    refused = jobdb("reset", str(pre), "--yes", *db, cwd=tmp_path, check=2)
    assert "4 job(s) below the selection have run or are running" in refused.stderr
    assert "demo / train: 2 done" in refused.stderr
    assert "demo / eval: 2 done" in refused.stderr
    assert "--cascade" in refused.stderr

    dry = jobdb("reset", str(pre), "--cascade", "--dry-run", *db, cwd=tmp_path)
    assert "Would reset 5 job(s): 4 → waiting, 1 → ready." in dry.stdout
    assert "Dry run: nothing was changed." in dry.stdout
    dry_json = json.loads(
        jobdb("reset", str(pre), "--cascade", "-n", "--json", *db, cwd=tmp_path).stdout
    )
    assert (dry_json["dry_run"], dry_json["jobs"], dry_json["roots"]) == (True, 5, [pre])
    assert table_counts(store) == before

    done = json.loads(
        jobdb("reset", str(pre), "--cascade", "--yes", "--json", *db, cwd=tmp_path).stdout
    )
    assert done["jobs"] == 5
    assert {(c["phase"], c["before"], c["after"], c["count"]) for c in done["changes"]} == {
        ("pre", "done", "ready", 1),
        ("train", "done", "waiting", 2),
        ("eval", "done", "waiting", 2),
    }
    with store.read() as conn:
        assert set(states_of(conn, [pre, *made["train"], *made["eval"]]).values()) == {
            "ready",
            "waiting",
        }
    n_jobs, n_attempts, n_events, _ = table_counts(store)
    assert (n_jobs, n_attempts, n_events) == (before[0], before[1], before[2] + 5)


def test_reset_by_phase_stops_a_running_program(store: Store, db_url: URL, tmp_path: Path) -> None:
    made = pipeline(store)
    (_, t2), (_, e2) = made["train"], made["eval"]
    db = ["--db", db_arg(db_url)]
    # Run e2 again: reset it alone, then start it with a real program.
    jobdb("reset", str(e2), "--yes", *db, cwd=tmp_path)
    with running_program(store, e2) as proc:
        out = jobdb(
            "reset", "-p", "train", "--where", "lr=0.01", "--cascade", "-y", *db, cwd=tmp_path
        ).stdout
        assert proc.wait(timeout=20) == -signal.SIGTERM
    with store.read() as conn:
        attempt = job_row(conn, e2)["attempt"]
    assert f"job {e2} (running, attempt {attempt}): terminated" in out
    assert "Reset 2 job(s): 1 → waiting, 1 → ready; 1 queued or running" in out
    with store.read() as conn:
        assert states_of(conn, [t2, e2]) == {t2: "ready", e2: "waiting"}


def test_cancel_blocks_what_waits_below(store: Store, db_url: URL, tmp_path: Path) -> None:
    made = pipeline(store)
    (pre,), (t1, t2), (e1, e2) = made["pre"], made["train"], made["eval"]
    db = ["--db", db_arg(db_url)]
    jobdb("reset", str(pre), "--cascade", "--yes", *db, cwd=tmp_path)

    dry = jobdb("cancel", str(pre), "--dry-run", *db, cwd=tmp_path).stdout
    assert f"job {pre} pre ready → cancelled" in dry
    assert "Would cancel 5 job(s): 1 → cancelled, 4 → blocked." in dry
    jobdb("cancel", str(pre), *db, cwd=tmp_path, check=2)  # no terminal, no --yes

    out = jobdb("cancel", "-e", "demo", "--state", "ready", "--yes", *db, cwd=tmp_path).stdout
    assert "Cancelled 5 job(s): 1 → cancelled, 4 → blocked." in out
    with store.read() as conn:
        assert states_of(conn, [pre, t1, t2, e1, e2]) == {
            pre: "cancelled",
            t1: "blocked",
            t2: "blocked",
            e1: "blocked",
            e2: "blocked",
        }
    again = jobdb("cancel", str(pre), "--yes", *db, cwd=tmp_path, check=2)
    assert "nothing to cancel: the selected jobs have all ended (1 cancelled)" in again.stderr
    released = jobdb("reset", str(pre), "-y", *db, cwd=tmp_path).stdout
    assert "Reset 5 job(s): 4 → waiting, 1 → ready." in released


@SQLITE_ONLY
def test_bad_selections_and_large_previews(store: Store, db_url: URL, tmp_path: Path) -> None:
    db = ["--db", db_arg(db_url)]
    with store.write() as conn:
        phase = make_phase(conn, make_experiment(conn, "big"), "grid")
        make_jobs(conn, phase, 60, state=State.FAILED, attempt=1)
    for args, message in (
        ((), "say which jobs"),
        (("999999",), "no job with id 999999"),
        (("--state", "bogus"), "--state: unknown state 'bogus'"),
        (("--where", "lr"), "expected key=value"),
        (("-e", "nope"), "no jobs match the selection"),
    ):
        failed = jobdb("reset", *args, "--yes", *db, cwd=tmp_path, check=2)
        assert message in failed.stderr, failed.stderr
    big = jobdb("reset", "-e", "big", "--dry-run", *db, cwd=tmp_path).stdout
    assert "jobs per phase and state" in big  # a table, not a tree of 60 jobs
    assert "Would reset 60 job(s): 60 → ready." in big
