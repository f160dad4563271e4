"""``jobdb monitor`` and ``jobdb logs`` as a user types them, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import URL

from jobdb import procs, queries
from jobdb.sqltypes import db_now
from jobdb.states import State
from jobdb.store import Store, connect
from tests.acceptance.cli import JOBDB, db_arg, jobdb
from tests.factories import jobs, make_edges, make_phase_with_jobs, states_of

ACTOR = "cli-test"
ELSEWHERE = str(procs.Token("elsewhere.example", 4242, 1.0))


@pytest.fixture
def db(db_url: URL) -> Iterator[Store]:
    store = connect(db_url)
    yield store
    store.dispose()


@pytest.fixture
def dead_token() -> str:
    """The token of a supervisor that ran on this host and died."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    token = procs.supervisor_token(proc.pid)
    proc.kill()
    proc.wait()
    return token


def start(store: Store, job_id: int, worker: str, *, logs: tuple[Path, Path] | None = None) -> int:
    """Claim and start a job as supervisor ``worker``; returns the attempt."""
    out, err = logs or (None, None)
    with store.write() as conn:
        [claimed] = queries.claim(conn, 1, actor=ACTOR, worker=worker, job_ids=[job_id])
        queries.start(
            conn,
            job_id,
            actor=ACTOR,
            attempt=claimed.attempt,
            host=procs.HOST,
            stdout_path=None if out is None else str(out),
            stderr_path=None if err is None else str(err),
        )
    return claimed.attempt


def age_heartbeat(store: Store, job_id: int) -> None:
    with store.write() as conn:
        past = conn.execute(select(db_now())).scalar_one() - dt.timedelta(hours=1)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(heartbeat_at=past))


def new_jobs(store: Store, n: int, **columns: Any) -> list[int]:
    with store.write() as conn:
        return make_phase_with_jobs(conn, n, **columns)[2]


def popen(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "JOBDB_URL"}
    env["COLUMNS"] = "200"
    return subprocess.Popen(
        [*JOBDB, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> float:
    """Poll until ``condition`` holds; returns the seconds it took."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - began


def interrupt(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[str, str]:
    proc.send_signal(sig)
    return proc.communicate(timeout=30)


# --------------------------------------------------------------------------
# jobdb monitor


def test_once_prints_what_it_flagged(
    db: Store, db_url: URL, tmp_path: Path, dead_token: str
) -> None:
    stale, lost, unstarted, child = new_jobs(db, 4, max_attempts=2)
    with db.write() as conn:
        conn.execute(update(jobs).where(jobs.c.id == child).values(state="waiting"))
        make_edges(conn, [(lost, child)])
        conn.execute(update(jobs).where(jobs.c.id == lost).values(max_attempts=1))
    start(db, stale, ELSEWHERE)
    age_heartbeat(db, stale)
    start(db, lost, dead_token)
    with db.write() as conn:
        queries.claim(conn, 1, actor=ACTOR, worker=dead_token, job_ids=[unstarted])
    out = jobdb("monitor", "--once", "--db", db_arg(db_url), cwd=tmp_path).stdout
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "heartbeat" in lines[str(stale)] and "retry" in lines[str(stale)]
    assert "process vanished" in lines[str(lost)] and f"blocked {child}" in lines[str(lost)]
    assert "supervisor lost" in lines[str(unstarted)] and "released" in lines[str(unstarted)]
    with db.read() as conn:
        assert states_of(conn, [stale, lost, unstarted, child]) == {
            stale: "ready",
            lost: "crashed",
            unstarted: "ready",
            child: "blocked",
        }
    again = jobdb("monitor", "--once", "--db", db_arg(db_url), cwd=tmp_path).stdout
    assert again.startswith("nothing to flag")


def test_once_json(db: Store, db_url: URL, tmp_path: Path) -> None:
    [job_id] = new_jobs(db, 1)
    start(db, job_id, ELSEWHERE)
    age_heartbeat(db, job_id)
    out = jobdb("monitor", "--once", "--json", "--db", db_arg(db_url), cwd=tmp_path).stdout
    assert json.loads(out) == {
        "verdicts": [
            {
                "job_id": job_id,
                "attempt": 1,
                "state": "crashed",
                "reason": "heartbeat",
                "retried": False,
                "blocked": [],
            }
        ],
        "skipped": [],
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--once", "--watch"], "exclude each other"),
        (["--watch", "--json"], "drop --watch or --json"),
        (["--interval", "0"], "--interval"),
        (["--heartbeat-timeout", "0.5"], "--heartbeat-timeout"),
    ],
)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bad_options(db_url: URL, tmp_path: Path, args: list[str], message: str) -> None:
    proc = jobdb("monitor", *args, "--db", db_arg(db_url), cwd=tmp_path, check=2)
    assert message in proc.stderr


def test_the_watcher_flags_a_lost_job_within_an_interval(
    db: Store, db_url: URL, tmp_path: Path
) -> None:
    """Running until Ctrl-C: a heartbeat that goes stale is judged on the next pass."""
    [job_id] = new_jobs(db, 1)
    start(db, job_id, ELSEWHERE)
    out, err, proc = _watch_a_job_go_stale(db, db_url, tmp_path, job_id)
    assert proc.returncode == 0, err
    assert f"job {job_id} attempt 1: crashed (heartbeat), for good" in out, (out, err)
    assert "every 0.2 s" in err and "monitor stopped" in err


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_watcher_prints_json_lines(db: Store, db_url: URL, tmp_path: Path) -> None:
    [job_id] = new_jobs(db, 1, max_attempts=2)
    start(db, job_id, ELSEWHERE)
    out, err, proc = _watch_a_job_go_stale(db, db_url, tmp_path, job_id, "--json")
    assert proc.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {
            "job_id": job_id,
            "attempt": 1,
            "state": "crashed",
            "reason": "heartbeat",
            "retried": True,
            "blocked": [],
        }
    ]


def _watch_a_job_go_stale(
    db: Store, db_url: URL, cwd: Path, job_id: int, *args: str
) -> tuple[str, str, subprocess.Popen[str]]:
    """Start the watcher, age the job's heartbeat, wait for the verdict, stop the watcher."""
    proc = popen("monitor", "--interval", "0.2", *args, "--db", db_arg(db_url), cwd=cwd)
    try:
        time.sleep(1.0)  # started and past a pass or two
        age_heartbeat(db, job_id)

        def judged() -> bool:
            with db.read() as conn:
                return states_of(conn, [job_id])[job_id] != "running"

        assert wait_for(judged) < 5.0
    finally:
        out, err = interrupt(proc)
    return out, err, proc


def test_watch_shows_a_dashboard(db: Store, db_url: URL, tmp_path: Path) -> None:
    done, busy, _ = new_jobs(db, 3)
    for job_id in (done, busy):
        start(db, job_id, ELSEWHERE)
    with db.write() as conn:
        queries.finish(conn, done, 1, State.DONE, actor=ACTOR, result={"acc": 0.9})
    proc = popen("monitor", "--watch", "--interval", "0.2", "--db", db_arg(db_url), cwd=tmp_path)
    time.sleep(2.5)
    out, err = interrupt(proc, signal.SIGTERM)  # as a service manager stops it
    assert proc.returncode == 0, err
    assert "Progress" in out and "1/3" in out
    assert "Running (1 of 1)" in out and procs.HOST in out
    assert "Latest verdicts" in out and ACTOR in out


# --------------------------------------------------------------------------
# jobdb logs


def write_logs(folder: Path, name: str, out: str, err: str) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    paths = (folder / f"{name}.out", folder / f"{name}.err")
    paths[0].write_text(out)
    paths[1].write_text(err)
    return paths


def test_logs_of_the_latest_and_of_an_earlier_attempt(
    db: Store, db_url: URL, tmp_path: Path
) -> None:
    [job_id] = new_jobs(db, 1, max_attempts=2)
    first = write_logs(tmp_path / "logs", "1", "try 1\n", "Traceback: boom\n")
    start(db, job_id, ELSEWHERE, logs=first)
    with db.write() as conn:
        queries.finish(conn, job_id, 1, State.CRASHED, actor=ACTOR, retry=True)
    second = write_logs(tmp_path / "logs", "2", "epoch 1\nepoch 2\nepoch 3\n", "warning\n")
    start(db, job_id, ELSEWHERE, logs=second)
    url = db_arg(db_url)

    latest = jobdb("logs", str(job_id), "--db", url, cwd=tmp_path).stdout
    assert latest == (
        f"==> stdout: {second[0]} <==\nepoch 1\nepoch 2\nepoch 3\n"
        f"==> stderr: {second[1]} <==\nwarning\n"
    )
    earlier = jobdb("logs", str(job_id), "--attempt", "1", "--stderr", "--db", url, cwd=tmp_path)
    assert earlier.stdout == "Traceback: boom\n"
    tail = jobdb("logs", str(job_id), "--stdout", "--tail", "2", "--db", url, cwd=tmp_path)
    assert tail.stdout == "epoch 2\nepoch 3\n"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_logs_errors(db: Store, db_url: URL, tmp_path: Path) -> None:
    never_ran, ran = new_jobs(db, 2)
    start(db, ran, ELSEWHERE, logs=(tmp_path / "deleted.out", tmp_path / "deleted.err"))
    url = db_arg(db_url)
    for args, message in (
        (["424242"], "no job with id 424242"),
        ([str(never_ran)], f"job {never_ran} has not run yet (ready)"),
        ([str(ran), "--attempt", "3"], f"job {ran} has no attempt 3"),
        ([str(ran)], "no log file at"),
    ):
        proc = jobdb("logs", *args, "--db", url, cwd=tmp_path, check=2)
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_logs_follow_ends_when_the_job_finishes(db: Store, db_url: URL, tmp_path: Path) -> None:
    [job_id] = new_jobs(db, 1)
    out, err = write_logs(tmp_path / "logs", "1", "starting\n", "")
    start(db, job_id, ELSEWHERE, logs=(out, err))
    proc = popen("logs", str(job_id), "--follow", "--stdout", "--db", db_arg(db_url), cwd=tmp_path)
    try:
        time.sleep(1.0)
        with out.open("a") as handle:
            handle.write("epoch 1\n")
        time.sleep(0.7)
        assert proc.poll() is None  # still following a running job
        with out.open("a") as handle:
            handle.write("finished\n")
        with db.write() as conn:
            queries.finish(conn, job_id, 1, State.DONE, actor=ACTOR)
        printed, errors = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, errors
    assert printed == "starting\nepoch 1\nfinished\n"
