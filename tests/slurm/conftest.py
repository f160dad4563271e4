"""The real Slurm cluster for the tests in this folder (``scripts/slurm-local start``).

Tests here are marked ``slurm``. They skip, with the reason, when no cluster
answers; with ``JOBDB_REQUIRE_SLURM=1`` (CI) a missing cluster fails them
instead. The cluster is shared by the session, so every test names its
database (the database identity is in every Slurm job name jobdb submits)
and looks only at its own jobs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from jobdb.models import Attempt, Job
from jobdb.store import Store, connect
from tests.acceptance.cli import db_arg, jobdb

REQUIRE_SLURM_ENV = "JOBDB_REQUIRE_SLURM"
#: How a spec's command runs tests/slurm/programs.py (quoted for the command template).
PROGRAM = shlex.join([sys.executable, str(Path(__file__).with_name("programs.py"))])
SLURM_LOCAL = Path(__file__).parents[2] / "scripts" / "slurm-local"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slurm)


def _cluster_problem() -> str | None:
    """Why the cluster cannot be used, or None."""
    if shutil.which("sbatch") is None:
        return "Slurm client commands not found (apt-get install slurm-client)"
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        return 'SLURM_CONF is not set: eval "$(scripts/slurm-local start)" first'
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "scontrol ping timed out"
    if "UP" not in ping.stdout:
        return f"the Slurm controller does not answer (SLURM_CONF={conf}): {ping.stdout.strip()}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """SLURM_CONF of a cluster that answers; skip (or fail under JOBDB_REQUIRE_SLURM=1)."""
    problem = _cluster_problem()
    if problem is not None:
        if os.environ.get(REQUIRE_SLURM_ENV) == "1":
            pytest.fail(f"{REQUIRE_SLURM_ENV}=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    if any(s in node.stdout for s in ("down", "drain")):
        subprocess.run(["scontrol", "update", "NodeName=localhost", "State=RESUME"], check=False)
    return os.environ["SLURM_CONF"]


@pytest.fixture
def slurm_store(slurm_cluster: str, db_url: URL) -> Iterator[Store]:
    """A store on a fresh database (SQLite and PostgreSQL), with the cluster up."""
    opened = connect(db_url)
    try:
        yield opened
    finally:
        cancel_leftovers(opened.identity)
        opened.dispose()


def cancel_leftovers(identity: str) -> None:
    """scancel what a test left in Slurm (by the database identity in the job names)."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%A|%j"], capture_output=True, text=True, check=False
    ).stdout
    mine = [line.split("|")[0] for line in out.split() if f"jobdb-{identity}-" in line]
    if mine:
        subprocess.run(["scancel", *mine], check=False)


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}", pytrace=False)
        time.sleep(every)


def job_rows(store: Store) -> dict[int, Any]:
    with store.read() as conn:
        return {r.id: r for r in conn.execute(select(Job)).all()}


def attempt_rows(store: Store, job_id: int) -> list[Any]:
    with store.read() as conn:
        stmt = select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.number)
        return list(conn.execute(stmt).all())


def scontrol_job(slurm_id: str) -> dict[str, str]:
    """``scontrol show job ID`` as ``Key=value`` pairs (values without spaces only)."""
    out = subprocess.run(
        ["scontrol", "show", "job", slurm_id], capture_output=True, text=True, check=False
    ).stdout
    return dict(word.split("=", 1) for word in out.split() if "=" in word)


def node_state() -> str:
    return subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, check=False
    ).stdout.strip()


def ensure_node_up(timeout: float = 30.0) -> None:
    """Resume the node and wait until it takes jobs; restart the cluster's daemons if it won't.

    ``scripts/slurm-local start`` is idempotent: it starts what is not
    running (slurmd included) and resumes a down or drained node.
    """
    subprocess.run(
        ["scontrol", "update", "nodename=localhost", "state=resume"],
        capture_output=True, check=False,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node_state() in ("idle", "mixed", "allocated"):
            return
        time.sleep(0.5)
    subprocess.run([str(SLURM_LOCAL), "start"], capture_output=True, check=True, timeout=120)
    assert node_state() in ("idle", "mixed", "allocated"), node_state()


def start_jobdb(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """``jobdb ARGS`` in the background (for a dispatcher the test acts on while it runs)."""
    env = {k: v for k, v in os.environ.items() if k != "JOBDB_URL"}
    return subprocess.Popen(
        [sys.executable, "-m", "jobdb", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def squeue_states(slurm_ids: list[str]) -> dict[str, str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%A|%T", "-j", ",".join(slurm_ids)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return dict(line.split("|", 1) for line in out.stdout.split())


#: A 3-phase DAG: 2 prep jobs, 4 train jobs (2 per prep), 2 test jobs (one per x).
DAG = """
name: dag
phases:
  - name: prep
    command: "sh -c 'echo prep {x}'"
    grid: {x: [1, 2]}
  - name: train
    after: prep
    command: "sh -c 'echo train {x} {lr}'"
    grid: {lr: [0.1, 0.2]}
  - name: test
    after: train
    group_by: [x]
    command: "sh -c 'echo test {x}'"
"""


def schedule(tmp_path: Path, url: URL, text: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    jobdb("schedule", str(spec), "--db", db_arg(url), "--yes", cwd=tmp_path)
