"""``--slurm-dependencies``: whole chains submitted at once, on the real cluster.

One dispatch submits every phase: the jobs of later phases wait in Slurm
behind their parents' Slurm jobs (``afterok``), so nothing on the
submitting side has to stay up. A parent that fails leaves its dependents
blocked (Slurm cancels them, jobdb records why); a parent that is retried
takes its dependents along to the retry.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from jobdb.models import Edge, Event
from jobdb.store import Store
from tests.acceptance.cli import db_arg, jobdb
from tests.slurm.conftest import (
    DAG,
    PROGRAM,
    attempt_rows,
    job_rows,
    schedule,
    squeue_states,
    wait_for,
)

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)


def dispatch(tmp_path: Path, url: URL, *args: str) -> dict[str, object]:
    out = jobdb(
        "dispatch", "-x", "slurm", "--slurm-dependencies", "--heartbeat-interval", "1",
        "--json", *args, "--db", db_arg(url), cwd=tmp_path,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def monitor_once(tmp_path: Path, url: URL) -> dict[str, list[dict[str, object]]]:
    out = jobdb("monitor", "--once", "--json", "--db", db_arg(url), cwd=tmp_path)
    return dict(json.loads(out.stdout))


def states(store: Store) -> dict[int, str]:
    return {job_id: row.state for job_id, row in job_rows(store).items()}


def claim_reasons(store: Store) -> dict[int, str]:
    """The reason each job was claimed with (the last claim)."""
    with store.read() as conn:
        rows = conn.execute(
            select(Event.job_id, Event.reason).where(Event.to_state == "queued").order_by(Event.id)
        ).all()
    return {int(job_id): str(reason) for job_id, reason in rows}


def test_a_three_phase_chain_completes_from_one_dispatch(
    slurm_store: Store, db_url: URL, tmp_path: Path
) -> None:
    schedule(tmp_path, db_url, DAG)
    summary = dispatch(tmp_path, db_url)
    assert summary["submitted"] == 8 and summary["dependents"] == 6
    assert summary["states"] == {"queued": 8}
    wait_for("the chain to finish", lambda: set(states(slurm_store).values()) == {"done"}, 120)
    assert monitor_once(tmp_path, db_url) == {"verdicts": [], "skipped": []}
    rows = job_rows(slurm_store)
    reasons = claim_reasons(slurm_store)
    with slurm_store.read() as conn:
        parents: dict[int, list[int]] = {}
        for parent, child in conn.execute(select(Edge.parent_id, Edge.child_id)):
            parents.setdefault(child, []).append(parent)
    for job_id, row in rows.items():
        (attempt,) = attempt_rows(slurm_store, job_id)  # each ran once
        assert attempt.state == "done" and attempt.external_id == row.external_id
        ids = sorted((rows[p].external_id for p in parents.get(job_id, [])), key=int)
        # Both ids recorded: its own on the job, its parents' in the reason it was claimed with.
        want = f"claimed behind Slurm job(s) {':'.join(ids)}" if ids else "claimed"
        assert reasons[job_id] == want
        for parent in parents.get(job_id, []):
            assert attempt_rows(slurm_store, parent)[0].ended_at <= attempt.started_at


def test_a_failed_parent_leaves_its_dependents_blocked(
    slurm_store: Store, db_url: URL, tmp_path: Path
) -> None:
    schedule(
        tmp_path,
        db_url,
        """
name: broken
phases:
  - name: a
    command: "sh -c 'exit 3'"
  - name: b
    after: a
    command: "true"
  - name: c
    after: b
    command: "true"
""",
    )
    summary = dispatch(tmp_path, db_url)
    assert summary["dependents"] == 2
    slurm_ids = [row.external_id for row in job_rows(slurm_store).values()]
    wait_for("the parent to fail", lambda: states(slurm_store)[1] == "failed", 60)
    # Slurm cancels the dependents (DependencyNeverSatisfied) without starting them.
    wait_for(
        "Slurm to cancel the dependents",
        lambda: all(squeue_states(slurm_ids[1:]).get(i) == "CANCELLED" for i in slurm_ids[1:]),
        30,
    )
    found = monitor_once(tmp_path, db_url)
    assert sorted((v["job_id"], v["state"]) for v in found["verdicts"]) == [
        (2, "blocked"),
        (3, "blocked"),
    ]
    assert states(slurm_store) == {1: "failed", 2: "blocked", 3: "blocked"}
    (b_attempt,) = attempt_rows(slurm_store, 2)
    assert (b_attempt.state, b_attempt.reason) == (
        "released",
        "dependency never satisfied (parent 1 failed)",
    )
    assert b_attempt.started_at is None  # it never ran
    # Their Slurm jobs never started: no batch log was written.
    logs = sorted(p.name for p in (tmp_path / "jobdb-runs" / "slurm").glob("job-*.out"))
    assert logs == [f"job-1-1-{slurm_ids[0]}.out"]


def test_a_retried_parent_takes_its_dependents_along(
    slurm_store: Store, db_url: URL, tmp_path: Path
) -> None:
    if db_url.get_backend_name() != "sqlite":
        pytest.skip("the watch loop is the same on both backends: one is enough")
    runs = tmp_path / "runs"
    schedule(
        tmp_path,
        db_url,
        f"""
name: retried
phases:
  - name: a
    command: "{PROGRAM} fail_once {runs}"
    retry: {{max_attempts: 2, on: [failed]}}
  - name: b
    after: a
    command: "true"
  - name: c
    after: b
    command: "true"
""",
    )
    summary = dispatch(tmp_path, db_url, "--watch")
    assert summary["states"] == {"done": 3}
    assert len(runs.read_text().splitlines()) == 2
    assert [(a.state, a.reason) for a in attempt_rows(slurm_store, 1)] == [
        ("failed", "exit 3"),
        ("done", "exit 0"),
    ]
    for job_id in (2, 3):
        # Submitted behind a's first attempt, given back unstarted, then behind its retry.
        first, second = attempt_rows(slurm_store, job_id)
        assert (first.state, first.started_at) == ("released", None)
        assert first.reason.startswith("dependency never satisfied (parent ")
        assert second.state == "done"
