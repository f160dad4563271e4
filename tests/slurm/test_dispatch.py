"""Submit → run → done through the real Slurm cluster: single jobs, arrays, a DAG."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from jobdb.models import Attempt
from jobdb.store import Store
from tests.acceptance.cli import db_arg, jobdb
from tests.slurm.conftest import DAG, PROGRAM, attempt_rows, job_rows, schedule


def test_three_phase_dag_with_watch(slurm_store: Store, db_url: URL, tmp_path: Path) -> None:
    schedule(tmp_path, db_url, DAG)
    out = jobdb(
        "dispatch", "-x", "slurm", "--watch", "--heartbeat-interval", "1", "--json",
        "--db", db_arg(db_url), cwd=tmp_path,
    )  # fmt: skip
    summary = json.loads(out.stdout)
    assert summary["states"] == {"done": 8}
    assert summary["slurm_jobs"] == 8 and summary["arrays"] == 0
    rows = job_rows(slurm_store)
    ids = {row.external_id for row in rows.values()}
    assert len(ids) == 8 and all(i and i.isdigit() for i in ids)
    for job_id in rows:
        (attempt,) = attempt_rows(slurm_store, job_id)
        assert attempt.state == "done" and attempt.external_id == rows[job_id].external_id
    # jobdb run inside the Slurm job recorded the program's own log.
    stdout = Path(rows[1].stdout_path).read_text()
    assert "prep 1" in stdout


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_array_larger_than_max_array_size_pulls_every_job_once(
    slurm_store: Store, db_url: URL, tmp_path: Path
) -> None:
    max_size = int(
        subprocess.run(
            "scontrol show config | awk '/^MaxArraySize/ {print $3}'",
            shell=True,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    count = max_size + 5
    schedule(
        tmp_path,
        db_url,
        f"""
name: many
settings: {{sbatch_mode: array}}
phases:
  - name: a
    command: "sh -c 'echo {{i}}'"
    grid: {{i: {{range: [0, {count}]}}}}
""",
    )
    out = jobdb(
        "dispatch", "-x", "slurm", "--watch", "--heartbeat-interval", "1",
        "--json", "--db", db_arg(db_url), cwd=tmp_path,
    )  # fmt: skip
    summary = json.loads(out.stdout)
    assert summary["states"] == {"done": count}
    assert summary["arrays"] == 2  # chunked: no index reaches MaxArraySize
    with slurm_store.read() as conn:
        rows = conn.execute(select(Attempt.job_id, Attempt.array_id, Attempt.external_id)).all()
    assert len(rows) == count  # one attempt each: no job ran twice
    assert len({r.array_id for r in rows}) == 2
    # Each job records the Slurm job id of the array task that ran it. (One task per
    # array keeps the array's own id, so a job may show the same id twice.)
    assert all(r.external_id and r.external_id.isdigit() for r in rows)
    scripts = list((tmp_path / "jobdb-runs" / "slurm").glob("array-*.out"))
    assert scripts  # the tasks' own logs


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_gpu_jobs_get_distinct_fake_gpus(slurm_store: Store, db_url: URL, tmp_path: Path) -> None:
    schedule(
        tmp_path,
        db_url,
        f"""
name: gpus
phases:
  - name: g
    command: "{PROGRAM} gpus"
    grid: {{i: [1, 2, 3, 4]}}
    resources: {{gpus: 2}}
""",
    )
    jobdb(
        "dispatch", "-x", "slurm", "--watch", "--heartbeat-interval", "1",
        "--db", db_arg(db_url), cwd=tmp_path,
    )  # fmt: skip
    rows = job_rows(slurm_store)
    assert all(r.state == "done" for r in rows.values()), {r.id: r.state for r in rows.values()}
    spans = []
    for row in rows.values():
        devices = row.result["gpus"].split(",")
        assert len(devices) == 2 and len(set(devices)) == 2
        spans.append((row.started_at, row.finished_at))
    # 4 fake GPUs, 2 per job: never more than 2 jobs at once.
    for start, _ in spans:
        running = sum(1 for s, e in spans if s <= start < e)
        assert running <= 2
