"""``jobdb smoke``: each phase's first job, inline on CPU, without touching the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from jobdb.models import Attempt, Event, Job
from jobdb.store import connect
from tests.acceptance.cli import db_arg, jobdb

TASKS = """
import os

def train(params, ctx):
    assert ctx.smoke, "the smoke run says so"
    assert ctx.device == "cpu" and os.environ["CUDA_VISIBLE_DEVICES"] == ""
    steps = 1 if ctx.smoke else 1000
    return {"acc": 0.5 + params["lr"], "steps": steps}

def retrain(params, ctx):
    # The best-of parent's result is the upstream smoke result.
    return {"lr": params["lr"], "parents": len(ctx.parents)}

def evaluate(params, ctx):
    return {"score": 1 / 0}
"""

SPEC = """
name: smk
phases:
  - name: train
    grid: {lr: [0.1, 0.2], fold: [0, 1]}
    task: smoketasks:train
  - name: retrain
    after: train
    select: {metric: acc, mode: max, keys: [lr], aggregate: mean}
    task: smoketasks:retrain
  - name: check
    after: retrain
    command: sh check.sh
  - name: evaluate
    after: retrain
    task: smoketasks:evaluate
  - name: report
    after: evaluate
    command: "true"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "smoketasks.py").write_text(TASKS)
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "check.sh").write_text(
        'test "$JOBDB_SMOKE" = 1 && echo \'{"smoke": true}\' > "$JOBDB_RESULT_FILE"\n'
    )
    return tmp_path


def _snapshot(url: URL) -> tuple[list[tuple[int, str, int]], int, int]:
    store = connect(url)
    with store.read() as conn:
        jobs = conn.execute(select(Job.id, Job.state, Job.attempt).order_by(Job.id)).all()
        attempts = conn.execute(select(func.count()).select_from(Attempt)).scalar_one()
        events = conn.execute(select(func.count()).select_from(Event)).scalar_one()
    store.dispose()
    return [tuple(j) for j in jobs], attempts, events  # type: ignore[misc]


def test_smoke_reports_each_phase_and_catches_the_broken_one(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    jobdb("schedule", "spec.yaml", "--db", db, cwd=project)
    before = _snapshot(db_url)
    proc = jobdb("smoke", "smk", "--json", "--db", db, cwd=project, check=1)
    runs = {run["phase"]: run for run in json.loads(proc.stdout)}
    assert [r["status"] for r in runs.values()] == ["ok", "ok", "ok", "failed", "skipped"]
    assert runs["train"]["result"] == {"acc": 0.6, "steps": 1}
    assert runs["retrain"]["result"] == {"lr": 0.1, "parents": 4}
    assert runs["check"]["result"] == {"smoke": True}
    assert "ZeroDivisionError" in runs["evaluate"]["detail"]
    assert runs["report"]["detail"] == "upstream evaluate failed"
    assert Path(runs["evaluate"]["log_dir"], "stderr.log").exists(), "logs kept on failure"
    assert _snapshot(db_url) == before, "smoke only reads the database"


def test_smoke_of_a_healthy_phase_passes_and_cleans_up(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    jobdb("schedule", "spec.yaml", "--db", db, cwd=project)
    proc = jobdb("smoke", "smk", "-p", "train,retrain", "--db", db, cwd=project)
    assert "train" in proc.stdout and "retrain" in proc.stdout and "evaluate" not in proc.stdout
    assert "Logs kept" not in proc.stdout


def test_smoke_names_an_unknown_phase(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    jobdb("schedule", "spec.yaml", "--db", db, cwd=project)
    proc = jobdb("smoke", "smk", "-p", "trian", "--db", db, cwd=project, check=2)
    assert "no phase named 'trian'" in proc.stderr


def test_a_phase_over_its_budget_fails(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    (project / "slow.yaml").write_text(
        "name: slow\nphases:\n  - name: a\n    grid: {i: [1]}\n    command: sleep 30\n"
    )
    jobdb("schedule", "slow.yaml", "--db", db, cwd=project)
    proc = jobdb("smoke", "slow", "--timeout", "0.5", "--json", "--db", db, cwd=project, check=1)
    [run] = json.loads(proc.stdout)
    assert run["status"] == "failed" and "budget of 0.5 s exceeded" in run["detail"]
