"""``kill -9`` of the dispatcher at random moments: nothing lost, nothing run twice.

A 2,000-job run (1,000 → 1,000 chained) is dispatched, the dispatcher is
killed with SIGKILL at random points (during the first submission burst and
while jobs run), restarted, killed again, and finally allowed to finish.
The jobs write start and end marks with their attempt numbers; together
with the attempts table they show that every job ended done, no job had two
attempts running at once, no finished job ran again, and a job interrupted
by a kill was retried as a new attempt.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from jobdb.models import Attempt, Job
from jobdb.store import connect
from tests.acceptance.cli import JOBDB, db_arg, jobdb

N = 1000  # per phase
MARK = (
    "sh -c 'echo S $JOBDB_JOB_ID $JOBDB_ATTEMPT >> marks; sleep 0.01; "
    "echo E $JOBDB_JOB_ID $JOBDB_ATTEMPT >> marks'"
)
SPEC = f"""
name: killed
phases:
  - name: a
    grid: {{i: {{range: [0, {N}]}}}}
    command: "{MARK}"
    retry: {{max_attempts: 50}}
  - name: b
    after: a
    command: "{MARK}"
    retry: {{max_attempts: 50}}
"""


def _dispatcher(project: Path, db: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "JOBDB_URL"}
    argv = [*JOBDB, "dispatch", "--watch", "--slots", "4", "-q", "--db", db]
    return subprocess.Popen(
        [*argv, "--heartbeat-interval", "0.5"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


@pytest.mark.slow
def test_killing_the_dispatcher_loses_nothing_and_runs_nothing_twice(
    db_url: URL, tmp_path: Path
) -> None:
    db = db_arg(db_url)
    (tmp_path / "spec.yaml").write_text(SPEC)
    jobdb("schedule", "spec.yaml", "--db", db, cwd=tmp_path)
    rng = random.Random(20261121)
    kills = 0
    with open(tmp_path / "dispatch.err", "wb") as log:
        for delay in [0.6, 0.8, *(rng.uniform(0.5, 2.5) for _ in range(6))]:
            proc = _dispatcher(tmp_path, db, log)
            time.sleep(delay)
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        final = _dispatcher(tmp_path, db, log)
        final.wait(timeout=600)
    assert final.returncode == 0, (tmp_path / "dispatch.err").read_text()
    assert kills >= 3, "the run finished before the dispatcher could be killed often enough"
    _check(db_url, tmp_path / "marks")


def _check(url: URL, marks_file: Path) -> None:
    store = connect(url)
    with store.read() as conn:
        final = dict(conn.execute(select(Job.id, Job.attempt).where(Job.state == "done")).all())
        total = conn.execute(select(Job.id)).all()
        tries = conn.execute(
            select(Attempt.job_id, Attempt.number, Attempt.state, Attempt.started_at,
                   Attempt.ended_at).order_by(Attempt.job_id, Attempt.number)
        ).all()  # fmt: skip
    store.dispose()
    assert len(final) == len(total) == 2 * N, "every job ended done"

    starts: dict[int, list[int]] = defaultdict(list)
    ends: dict[int, list[int]] = defaultdict(list)
    for line in marks_file.read_text().splitlines():
        kind, job, attempt = line.split()
        (starts if kind == "S" else ends)[int(job)].append(int(attempt))
    for job, attempt in final.items():
        assert attempt in starts[job] and attempt in ends[job], f"job {job} ran its done attempt"
        assert max(starts[job]) == attempt, f"job {job} ran again after it was done"
        assert len(starts[job]) == len(set(starts[job])), f"job {job} started an attempt twice"

    by_job: dict[int, list[tuple[int, str, object, object]]] = defaultdict(list)
    for job, number, state, began, ended in tries:
        by_job[job].append((number, state, began, ended))
    retried = 0
    for job, rows in by_job.items():
        ran = [r for r in rows if r[2] is not None]
        for (n1, _, _, end1), (n2, _, start2, _) in itertools.pairwise(ran):
            assert end1 is not None and end1 <= start2, f"job {job}: attempts {n1} and {n2} overlap"
        retried += len(ran) > 1
        assert [r[1] for r in rows][-1] == "done"
    assert retried > 0, "some job was interrupted by a kill and retried as a new attempt"
