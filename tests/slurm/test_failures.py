"""What jobdb records when Slurm jobs end badly, on the real cluster."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from jobdb import procs
from jobdb.store import Store
from tests.acceptance.cli import db_arg, jobdb
from tests.slurm.conftest import PROGRAM, attempt_rows, job_rows, squeue_states, wait_for

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)


def schedule(tmp_path: Path, url: URL, phases: str, name: str = "fail") -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: {name}\nphases:\n{phases}")
    jobdb("schedule", str(spec), "--db", db_arg(url), "--yes", cwd=tmp_path)


def dispatch(tmp_path: Path, url: URL, *args: str, check: int | None = 0) -> str:
    out = jobdb(
        "dispatch", "-x", "slurm", "--heartbeat-interval", "1", *args, "--db", db_arg(url),
        cwd=tmp_path, check=check,
    )  # fmt: skip
    return out.stdout


def monitor_once(tmp_path: Path, url: URL) -> str:
    return jobdb("monitor", "--once", "--db", db_arg(url), cwd=tmp_path).stdout


def sleeper(tmp_path: Path, attempts: int = 1) -> str:
    pid_file = tmp_path / "pid"
    return f"""  - name: a
    command: "{PROGRAM} sleep {pid_file}"
    retry: {{max_attempts: {attempts}}}
"""


def running(store: Store, job_id: int = 1) -> bool:
    return job_rows(store)[job_id].state == "running"


def test_scancel_outside_jobdb_is_crashed_cancelled(
    slurm_store: Store, db_url: URL, tmp_path: Path
) -> None:
    schedule(tmp_path, db_url, sleeper(tmp_path))
    dispatch(tmp_path, db_url)
    wait_for("the job to run", lambda: (tmp_path / "pid").exists(), 60)
    slurm_id = job_rows(slurm_store)[1].external_id
    subprocess.run(["scancel", slurm_id], check=True)
    wait_for("a verdict", lambda: job_rows(slurm_store)[1].state == "crashed", 30)
    row = job_rows(slurm_store)[1]
    assert row.state_reason == "cancelled outside jobdb"
    assert not procs.process_alive(int((tmp_path / "pid").read_text()))


def test_time_limit_is_a_timeout_retried_from_its_checkpoint(
    slurm_store: Store, db_url: URL, tmp_path: Path
) -> None:
    if db_url.get_backend_name() != "sqlite":
        pytest.skip("a minute of Slurm time limit: one backend is enough")
    schedule(
        tmp_path,
        db_url,
        f"""  - name: a
    command: "{PROGRAM} checkpointed"
    resources: {{time: "1"}}
""",
    )
    dispatch(tmp_path, db_url, "--watch")
    row = job_rows(slurm_store)[1]
    assert row.state == "done" and row.result == {"resumed": True}
    first, second = attempt_rows(slurm_store, 1)
    assert (first.state, first.reason) == ("crashed", "timeout")
    assert second.state == "done" and second.external_id != first.external_id


def test_kill_9_of_the_job_is_crashed(slurm_store: Store, db_url: URL, tmp_path: Path) -> None:
    schedule(tmp_path, db_url, sleeper(tmp_path))
    dispatch(tmp_path, db_url)
    wait_for("the job to run", lambda: (tmp_path / "pid").exists(), 60)
    supervisor = procs.parse_token(job_rows(slurm_store)[1].worker)
    assert supervisor is not None
    os.kill(supervisor.pid, signal.SIGKILL)  # the batch process: jobdb run itself

    def judged() -> bool:
        monitor_once(tmp_path, db_url)
        return job_rows(slurm_store)[1].state == "crashed"

    wait_for("the monitor's verdict", judged, 30, every=1)
    row = job_rows(slurm_store)[1]
    assert row.state_reason in ("slurm job failed", "supervisor lost", "process vanished")
    wait_for(
        "the program to be gone",
        lambda: not procs.process_alive(int((tmp_path / "pid").read_text())),
        15,
    )


def test_dispatcher_killed_after_sbatch_submits_once(
    slurm_store: Store, db_url: URL, tmp_path: Path
) -> None:
    schedule(
        tmp_path,
        db_url,
        f"""  - name: a
    command: "{PROGRAM} gate {tmp_path / "go"}"
""",
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "sbatch"
    real = shutil.which("sbatch")
    wrapper.write_text(f'#!/bin/sh\n"{real}" "$@"\nrc=$?\nkill -9 $PPID\nexit $rc\n')
    wrapper.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    killed = jobdb(
        "dispatch", "-x", "slurm", "--db", db_arg(db_url), cwd=tmp_path, env=env, check=None
    )
    assert killed.returncode == -signal.SIGKILL
    row = job_rows(slurm_store)[1]
    assert (row.state, row.external_id) == ("queued", None)  # submitted, never recorded
    (tmp_path / "go").touch()
    dispatch(tmp_path, db_url, "--watch")
    attempts = attempt_rows(slurm_store, 1)
    assert [(a.state, a.reason) for a in attempts] == [
        ("released", "submitter died before recording its Slurm job"),
        ("done", "exit 0"),
    ]
    # The held orphan was cancelled without ever starting: only one Slurm job wrote a log.
    logs = list((tmp_path / "jobdb-runs" / "slurm").glob("job-1-*.out"))
    assert [p.name for p in logs] == [f"job-1-2-{attempts[1].external_id}.out"]


def test_reset_cascade_of_a_running_parent_cancels_its_slurm_job(
    slurm_store: Store, db_url: URL, tmp_path: Path
) -> None:
    schedule(
        tmp_path,
        db_url,
        sleeper(tmp_path) + '  - name: b\n    after: a\n    command: "true"\n',
    )
    dispatch(tmp_path, db_url)
    wait_for("the job to run", lambda: (tmp_path / "pid").exists(), 60)
    slurm_id = job_rows(slurm_store)[1].external_id
    out = jobdb("reset", "1", "--cascade", "--yes", "--json", "--db", db_arg(db_url), cwd=tmp_path)
    assert '"outcome": "terminated"' in out.stdout
    rows = job_rows(slurm_store)
    assert (rows[1].state, rows[2].state) == ("ready", "waiting")
    wait_for(
        "Slurm to cancel it",
        lambda: squeue_states([slurm_id]).get(slurm_id) in ("CANCELLED", None),
        15,
    )
    wait_for(
        "the program to be gone",
        lambda: not procs.process_alive(int((tmp_path / "pid").read_text())),
        15,
    )
