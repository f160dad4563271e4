"""The node fails under a running job, on the real cluster.

``scontrol update nodename=localhost state=down`` while the job runs: Slurm
ends it NODE_FAIL and signals it. jobdb must record the attempt crashed
(``node failure``, or ``heartbeat`` if that is what it sees first) within
its latency bound, retry it once the node is back, and never let Slurm's
own requeue run it a second time (jobdb submits with ``--no-requeue``).
The job's program appends a line to a file on every run, so the test
counts the real runs, whoever started them.

A hung node is the other case: the job's processes freeze while Slurm
still shows it RUNNING, and only jobdb's heartbeat can tell.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from jobdb import procs
from jobdb.slurm.dispatch import DEFAULT_INTERVAL_S
from jobdb.store import Store
from tests.acceptance.cli import db_arg, jobdb
from tests.slurm.conftest import (
    PROGRAM,
    attempt_rows,
    ensure_node_up,
    job_rows,
    scontrol_job,
    squeue_states,
    start_jobdb,
    wait_for,
)

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)

#: Short, so that a heartbeat verdict would also come within the test's patience.
HEARTBEAT_TIMEOUT_S = 5.0
#: What the issue allows: the heartbeat timeout plus one pass of the watcher.
LATENCY_BOUND_S = HEARTBEAT_TIMEOUT_S + DEFAULT_INTERVAL_S
#: The duration of the watcher's pass itself and of the test's polling, on a busy machine.
PASS_SLACK_S = 2.0


def schedule_once(tmp_path: Path, url: URL, runs: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""name: node
phases:
  - name: a
    command: "{PROGRAM} once {runs}"
    retry: {{max_attempts: 2}}
"""
    )
    jobdb("schedule", str(spec), "--db", db_arg(url), "--yes", cwd=tmp_path)


def first_attempt_ended(store: Store) -> str | None:
    """The first attempt's reason once it is crashed, else None."""
    attempts = attempt_rows(store, 1)
    if attempts and attempts[0].state == "crashed":
        return str(attempts[0].reason)
    return None


def running_with_a_program(store: Store, runs: Path) -> bool:
    row = job_rows(store)[1]
    return runs.exists() and row.state == "running" and row.pid is not None


def start_watcher(tmp_path: Path, db_url: URL) -> subprocess.Popen[str]:
    """``dispatch -x slurm --watch`` with a short heartbeat timeout, in the background."""
    return start_jobdb(
        "dispatch", "-x", "slurm", "--watch", "--json", "--heartbeat-interval", "1",
        "--heartbeat-timeout", f"{HEARTBEAT_TIMEOUT_S:g}", "--db", db_arg(db_url), cwd=tmp_path,
    )  # fmt: skip


def test_node_down_crashes_the_job_and_the_retry_runs_once(
    slurm_store: Store, db_url: URL, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    schedule_once(tmp_path, db_url, runs)
    watcher = start_watcher(tmp_path, db_url)
    try:
        wait_for(
            "the first run",
            lambda: runs.exists() and job_rows(slurm_store)[1].state == "running",
            60,
        )
        first_slurm_id = job_rows(slurm_store)[1].external_id
        began = time.monotonic()
        try:
            subprocess.run(
                ["scontrol", "update", "nodename=localhost", "state=down", "reason=test"],
                check=True,
            )
            reason = wait_for("the crash", lambda: first_attempt_ended(slurm_store), 60, every=0.2)
            latency = time.monotonic() - began
        finally:
            ensure_node_up()
        out, err = watcher.communicate(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, f"{out}\n{err}"
    assert json.loads(out)["states"] == {"done": 1}
    assert reason in ("node failure", "heartbeat")
    assert latency <= LATENCY_BOUND_S, f"crashed {latency:.1f} s after the node went down"
    first, second = attempt_rows(slurm_store, 1)
    assert first.external_id == first_slurm_id
    assert (second.state, second.reason) == ("done", "exit 0")
    assert second.external_id != first_slurm_id
    # Slurm ended the first job for good: no requeue of its own ran it again.
    shown = scontrol_job(first_slurm_id)
    assert shown.get("JobState") == "NODE_FAIL" and shown.get("Restarts") == "0", shown
    assert len(runs.read_text().splitlines()) == 2


def test_hung_job_slurm_shows_running_is_crashed_by_heartbeat_and_cancelled(
    slurm_store: Store, db_url: URL, tmp_path: Path
) -> None:
    """A hung node: the job's processes freeze, Slurm still shows it RUNNING.

    Only the heartbeat tells: the watcher crashes the attempt, terminates the
    program (it runs on the watcher's host here), cancels the Slurm job (on
    a real cluster the only way to stop it there) and the retry runs once.
    """
    runs = tmp_path / "runs"
    schedule_once(tmp_path, db_url, runs)
    watcher = start_watcher(tmp_path, db_url)
    try:
        wait_for("the first run", lambda: running_with_a_program(slurm_store, runs), 60)
        row = job_rows(slurm_store)[1]
        supervisor = procs.parse_token(row.worker)
        assert supervisor is not None
        os.kill(supervisor.pid, signal.SIGSTOP)  # jobdb run: no more heartbeats
        began = time.monotonic()
        reason = wait_for("the crash", lambda: first_attempt_ended(slurm_store), 60, every=0.2)
        latency = time.monotonic() - began
        out, err = watcher.communicate(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, f"{out}\n{err}"
    # Slurm's view came first in each pass and said nothing: only the heartbeat told.
    assert reason == "heartbeat"
    assert latency <= LATENCY_BOUND_S + PASS_SLACK_S, f"crashed {latency:.1f} s after the hang"
    wait_for(
        "Slurm to cancel the hung job",
        lambda: squeue_states([row.external_id]).get(row.external_id) in ("CANCELLED", None),
        30,
    )
    assert not procs.process_alive(row.pid)
    first, second = attempt_rows(slurm_store, 1)
    assert (first.state, first.external_id) == ("crashed", row.external_id)
    assert (second.state, second.reason) == ("done", "exit 0")
    assert len(runs.read_text().splitlines()) == 2
