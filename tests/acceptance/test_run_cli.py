"""Running jobs through the CLI with real processes, on SQLite and PostgreSQL.

Each test writes a spec whose commands run ``probe.py`` (below): a program
that records what it received (argv, devices, attempt, times) in its result
and fails, crashes or writes bad JSON on request.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from jobdb.models import Attempt, Job, Phase
from jobdb.procs import process_alive
from jobdb.queries import transition
from jobdb.states import State
from jobdb.store import connect
from tests.acceptance.cli import JOBDB, db_arg, jobdb

PROBE = r"""
import json, os, sys, time
mode = sys.argv[1]
attempt = int(os.environ["JOBDB_ATTEMPT"])
began = time.time()
if mode == "sleep":
    time.sleep(float(sys.argv[2]))
while mode == "gate" and not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
if mode == "oom-above" and int(sys.argv[3]) > int(sys.argv[2]):
    print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr)
    sys.exit(1)
if mode == "fail" or (mode == "fail-first" and attempt == 1):
    print("something broke: line 1", file=sys.stderr)
    print("the real cause", file=sys.stderr)
    sys.exit(3)
if mode == "kill-first" and attempt == 1:
    os.kill(os.getpid(), 9)
out = {"argv": sys.argv[2:], "devices": os.environ["CUDA_VISIBLE_DEVICES"],
       "attempt": attempt, "began": began, "ended": time.time(),
       "context": json.load(open(os.environ["JOBDB_CONTEXT_FILE"]))["parents"]}
if mode == "score":
    out["acc"] = float(sys.argv[2])
text = "{not json" if mode == "badjson" else json.dumps(out)
open(os.environ["JOBDB_RESULT_FILE"], "w").write(text)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "probe.py").write_text(PROBE)
    return tmp_path


def probe(mode: str, *args: str) -> str:
    """A command running the probe with this interpreter, as a quoted YAML scalar."""
    return json.dumps(" ".join([json.dumps(sys.executable), "probe.py", mode, *args]))


def schedule(project: Path, db: str, spec: str) -> None:
    (project / "spec.yaml").write_text(spec)
    jobdb("schedule", "spec.yaml", "--db", db, cwd=project)


def jobs_by_phase(url: URL) -> dict[str, list[dict[str, Any]]]:
    store = connect(url)
    query = select(Phase.name, Job.__table__).join(Phase, Phase.id == Job.phase_id).order_by(Job.id)
    found: dict[str, list[dict[str, Any]]] = {}
    with store.read() as conn:
        for row in conn.execute(query).mappings():
            found.setdefault(row["name"], []).append(dict(row))
    store.dispose()
    return found


def attempts_of(url: URL, job_id: int) -> list[dict[str, Any]]:
    store = connect(url)
    query = select(Attempt.__table__).where(Attempt.job_id == job_id).order_by(Attempt.number)
    with store.read() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    store.dispose()
    return rows


def dispatch(project: Path, db: str, *extra: str, check: int | None = 0) -> str:
    proc = jobdb("dispatch", "--watch", "--db", db, "--heartbeat-interval", "0.5", *extra,
                 cwd=project, check=check)  # fmt: skip
    return proc.stdout + proc.stderr


def test_a_parameter_with_shell_metacharacters_reaches_the_program_verbatim(
    db_url: URL, project: Path
) -> None:
    db = db_arg(db_url)
    values = ["x; rm -rf ~", "$(touch pwned)", "a'b\"c", "line1\nline2", "*", "`id`"]
    spec = {
        "name": "meta",
        "phases": [
            {
                "name": "p",
                "grid": {"v": values},
                "command": json.loads(probe("ok", "--v", "{v}", "end")),
            }
        ],
    }
    schedule(project, db, json.dumps(spec))
    dispatch(project, db, "--slots", "2")
    jobs = jobs_by_phase(db_url)["p"]
    assert [j["state"] for j in jobs] == ["done"] * len(values)
    assert sorted(tuple(j["result"]["argv"]) for j in jobs) == sorted(
        ("--v", v, "end") for v in values
    )
    assert not (project / "pwned").exists()


def test_failures_are_reported_with_their_cause_and_block_descendants(
    db_url: URL, project: Path
) -> None:
    db = db_arg(db_url)
    spec = f"""
name: fails
phases:
  - name: a
    grid: {{mode: [fail, badjson]}}
    command: {probe("{mode}")}
  - name: b
    after: a
    command: {probe("ok")}
"""
    schedule(project, db, spec)
    out = dispatch(project, db, check=1)
    jobs = jobs_by_phase(db_url)
    failed, bad_json = jobs["a"]
    assert (failed["state"], failed["state_reason"], failed["exit_code"]) == ("failed", "exit 3", 3)
    assert "the real cause" in failed["error"]
    assert (bad_json["state"], bad_json["state_reason"]) == ("failed", "invalid result")
    assert "not valid JSON" in bad_json["error"]
    assert [j["state"] for j in jobs["b"]] == ["blocked", "blocked"]
    assert f"job {failed['id']} (a, attempt 1): exit 3" in out
    stderr_log = Path(failed["stderr_path"]).read_text()
    assert "the real cause" in stderr_log


def test_a_retried_failure_runs_again_as_a_new_attempt(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    spec = f"""
name: retry
phases:
  - name: a
    grid: {{mode: [fail-first, kill-first]}}
    command: {probe("{mode}")}
    retry: {{max_attempts: 2, on: [failed, crashed]}}
"""
    schedule(project, db, spec)
    out = dispatch(project, db)
    flaky, killed = jobs_by_phase(db_url)["a"]
    assert (flaky["state"], flaky["attempt"]) == ("done", 2)
    tries = attempts_of(db_url, flaky["id"])
    assert [(a["number"], a["state"]) for a in tries] == [(1, "failed"), (2, "done")]
    assert tries[0]["stderr_path"] != tries[1]["stderr_path"]
    assert [(a["number"], a["state"], a["reason"]) for a in attempts_of(db_url, killed["id"])] == [
        (1, "crashed", "killed by SIGKILL"),
        (2, "done", "exit 0"),
    ]
    assert "→ retry" in out


def test_run_refuses_a_job_that_already_ran(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    schedule(project, db, f"name: once\nphases:\n  - name: a\n    command: {probe('ok')}\n")
    [job] = jobs_by_phase(db_url)["a"]
    jobdb("run", str(job["id"]), "--db", db, cwd=project)
    again = jobdb("run", str(job["id"]), "--db", db, cwd=project, check=1)
    assert f"{job['id']} is done" in again.stdout + again.stderr
    assert len(attempts_of(db_url, job["id"])) == 1


def test_run_for_an_attempt_refuses_a_job_that_is_no_longer_queued_for_it(
    db_url: URL, project: Path
) -> None:
    """A dispatcher's ``jobdb run JOB --attempt N`` arriving after the job was given
    back (ready again) must not claim and run it: another dispatcher may."""
    db = db_arg(db_url)
    schedule(project, db, f"name: late\nphases:\n  - name: a\n    command: {probe('ok')}\n")
    [job] = jobs_by_phase(db_url)["a"]
    late = jobdb("run", str(job["id"]), "--attempt", "1", "--db", db, cwd=project, check=1)
    assert f"{job['id']} is ready" in late.stdout + late.stderr
    assert jobs_by_phase(db_url)["a"][0]["state"] == "ready"
    assert attempts_of(db_url, job["id"]) == []


def test_best_of_folds_reaches_the_child_and_its_descendants(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    # acc = lr * 10 + fold: lr=0.2 wins on the mean over folds.
    spec = f"""
name: cv
phases:
  - name: cv
    grid: {{lr: [0.1, 0.2]}}
    folds: 2
    command: {_score_command()}
  - name: retrain
    after: cv
    command: {probe("ok", "--lr", "{lr}")}
    select: {{metric: acc, mode: max}}
  - name: test
    after: retrain
    command: {probe("ok", "--lr", "{lr}")}
"""
    schedule(project, db, spec)
    dispatch(project, db)
    jobs = jobs_by_phase(db_url)
    [retrain], [test] = jobs["retrain"], jobs["test"]
    assert retrain["result"]["argv"] == ["--lr", "0.2"]
    assert test["result"]["argv"] == ["--lr", "0.2"]
    [ran] = attempts_of(db_url, retrain["id"])
    assert ran["params"]["lr"] == 0.2
    assert "selected lr=0.2: mean acc" in Path(retrain["stdout_path"]).read_text()
    assert len(retrain["result"]["context"]) == 4  # the job saw its four parents


def _score_command() -> str:
    code = (
        "import json,os; p=json.loads(os.environ['JOBDB_PARAMS']); "
        "json.dump(dict(acc=p['lr'] * 10 + p['fold']), open(os.environ['JOBDB_RESULT_FILE'], 'w'))"
    )
    return json.dumps(f'{json.dumps(sys.executable)} -c "{code}"')


def test_gpu_jobs_get_their_own_devices(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    spec = f"""
name: gpus
phases:
  - name: two
    grid: {{i: [0, 1, 2, 3]}}
    resources: {{gpus: 2}}
    command: {probe("sleep", "0.3")}
  - name: cpu
    grid: {{i: [0, 1]}}
    command: {probe("ok")}
"""
    schedule(project, db, spec)
    dispatch(project, db, "--gpus", "0,1,3", "--slots", "1")
    jobs = jobs_by_phase(db_url)
    runs = [(j["result"]["devices"].split(","), j["result"]) for j in jobs["two"]]
    for devices, _ in runs:
        assert len(devices) == 2 and len(set(devices)) == 2 and set(devices) <= {"0", "1", "3"}
    for i, (devices_a, a) in enumerate(runs):
        for devices_b, b in runs[i + 1 :]:
            overlap = a["began"] < b["ended"] and b["began"] < a["ended"]
            assert not (overlap and set(devices_a) & set(devices_b))
    assert [j["result"]["devices"] for j in jobs["cpu"]] == ["", ""]
    assert {j["gpus"] for j in jobs["two"]} <= {"0,1", "3,0", "0,3", "1,3", "3,1", "1,0"}


def test_a_job_asking_more_gpus_than_the_machine_has_is_left_ready(
    db_url: URL, project: Path
) -> None:
    db = db_arg(db_url)
    spec = f"""
name: big
phases:
  - name: big
    resources: {{gpus: 4}}
    command: {probe("ok")}
"""
    schedule(project, db, spec)
    out = dispatch(project, db, "--gpus", "0", check=1)
    assert "ask for more GPUs than this machine has" in out
    assert [j["state"] for j in jobs_by_phase(db_url)["big"]] == ["ready"]


def test_a_task_function_gets_params_and_its_parents(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    (project / "mytask.py").write_text(
        "def first(params, ctx):\n"
        "    (ctx.checkpoint_dir / 'seen').write_text('x')\n"
        "    return {'value': params['x'] * 2}\n"
        "def second(params, ctx):\n"
        "    total = sum(r['value'] for r in ctx.parent_results('first'))\n"
        "    return {'total': total, 'device': ctx.device, 'attempt': ctx.attempt}\n"
        "def broken(params, ctx):\n"
        "    raise RuntimeError('task exploded')\n"
    )
    spec = """
name: tasks
phases:
  - name: first
    grid: {x: [1, 2, 3]}
    task: mytask:first
  - name: second
    after: first
    group_by: []
    task: mytask:second
  - name: broken
    task: mytask:broken
"""
    schedule(project, db, spec)
    dispatch(project, db, check=1)
    jobs = jobs_by_phase(db_url)
    assert [j["result"] for j in jobs["first"]] == [{"value": 2}, {"value": 4}, {"value": 6}]
    assert jobs["second"][0]["result"] == {"total": 12, "device": "cpu", "attempt": 1}
    [broken] = jobs["broken"]
    assert broken["state"] == "failed" and "RuntimeError: task exploded" in broken["error"]
    assert (Path(jobs["first"][0]["work_dir"]) / "checkpoint" / "seen").exists()


def test_workers_drain_a_grid_and_each_job_runs_once(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    n = 2000
    spec = f"""
name: drain
phases:
  - name: a
    grid: {{i: {{range: [0, {n}]}}}}
    command: "sh -c 'echo $JOBDB_JOB_ID >> marks'"
"""
    schedule(project, db, spec)
    workers = [
        subprocess.Popen(
            [*JOBDB, "worker", "--db", db, "--slots", "2", "-q", "--json"],
            cwd=project,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    started = [json.loads(w.communicate(timeout=600)[0])["started"] for w in workers]
    assert all(w.returncode == 0 for w in workers)
    marks = (project / "marks").read_text().split()
    assert len(marks) == n and len(set(marks)) == n
    assert sum(started) == n
    assert {j["state"] for j in jobs_by_phase(db_url)["a"]} == {"done"}


def _wait_for(predicate: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _one_phase(name: str, values: str, command: str) -> str:
    return (
        f"name: {name}\nphases:\n  - name: a\n    grid: {{i: {values}}}\n    command: {command}\n"
    )


def _states(url: URL, phase: str = "a") -> list[str]:
    return [j["state"] for j in jobs_by_phase(url)[phase]]


def test_dispatch_without_watch_starts_what_fits_and_returns(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    spec = _one_phase("bg", "[0, 1, 2]", probe("gate", "open"))
    schedule(project, db, spec)
    out = jobdb("dispatch", "--slots", "2", "--db", db, cwd=project).stdout
    assert "Started 2 job(s)" in out
    again = jobdb("dispatch", "--slots", "2", "--db", db, cwd=project).stdout
    assert "Started 0 job(s)" in again, "the running jobs hold both slots"
    (project / "open").touch()
    _wait_for(lambda: _states(db_url).count("done") == 2)
    jobdb("dispatch", "--slots", "2", "--db", db, cwd=project)
    _wait_for(lambda: _states(db_url) == ["done"] * 3)


def test_ctrl_c_with_stop_running_terminates_and_records(db_url: URL, project: Path) -> None:
    db = db_arg(db_url)
    spec = _one_phase("stop", "[0, 1]", probe("sleep", "60"))
    schedule(project, db, spec)
    env = {k: v for k, v in os.environ.items() if k != "JOBDB_URL"}
    proc = subprocess.Popen(
        [*JOBDB, "dispatch", "--watch", "--stop-running", "--slots", "2", "--db", db],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    with _reaped(proc):
        _wait_for(lambda: _states(db_url) == ["running"] * 2)
        _wait_for(lambda: len(_pids(db_url)) == 2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Stopped by SIGINT" in out
    jobs = jobs_by_phase(db_url)["a"]
    # The default policy retries crashes: both are ready again, their first attempt closed.
    assert {(j["state"], j["attempt"]) for j in jobs} == {("ready", 1)}
    for job in jobs:
        [first] = attempts_of(db_url, job["id"])
        assert (first["state"], first["reason"]) == ("crashed", "interrupted by SIGINT")
    for pid in _pids(db_url):
        assert not process_alive(pid)


@contextlib.contextmanager
def _reaped(proc: subprocess.Popen[str]) -> Iterator[None]:
    """Kill and reap the dispatcher if the test fails halfway, so nothing leaks."""
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _pids(url: URL) -> list[int]:
    return [j["pid"] for j in jobs_by_phase(url)["a"] if j["pid"] is not None]


def test_a_job_cancelled_in_the_database_is_stopped_by_its_supervisor(
    db_url: URL, project: Path
) -> None:
    db = db_arg(db_url)
    schedule(project, db, f"name: c\nphases:\n  - name: a\n    command: {probe('sleep', '60')}\n")
    env = {k: v for k, v in os.environ.items() if k != "JOBDB_URL"}
    proc = subprocess.Popen(
        [*JOBDB, "worker", "--db", db, "--heartbeat-interval", "0.3"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    with _reaped(proc):
        _wait_for(lambda: bool(_pids(db_url)))
        [job] = jobs_by_phase(db_url)["a"]
        store = connect(db_url)
        with store.write() as conn:
            transition(conn, [job["id"]], State.CANCELLED, reason="by a test", actor="test")
        store.dispose()
        began = time.monotonic()
        out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - began < 15
    assert not process_alive(job["pid"])
    assert _states(db_url) == ["cancelled"]
    assert "lost" not in out.lower() or "cancelled" in out


def test_an_out_of_memory_retry_halves_the_batch_and_keeps_the_effective_batch(
    db_url: URL, project: Path
) -> None:
    db = db_arg(db_url)
    command = probe("oom-above", "16", "{batch_size}", "{accumulation_steps}")
    spec = f"""
name: oom
phases:
  - name: train
    grid: {{batch_size: [64, 8], accumulation_steps: [1]}}
    command: {command}
    retry: {{on: [oom], halve: batch_size, double: accumulation_steps, max_attempts: 4}}
"""
    schedule(project, db, spec)
    dispatch(project, db)
    big, small = jobs_by_phase(db_url)["train"]
    assert (big["state"], big["attempt"]) == ("done", 3)
    assert (small["state"], small["attempt"]) == ("done", 1)
    assert big["params"] == {"batch_size": 64, "accumulation_steps": 1}, "identity unchanged"
    tried = [(a["params"]["batch_size"], a["params"]["accumulation_steps"], a["state"], a["reason"])
             for a in attempts_of(db_url, big["id"])]  # fmt: skip
    assert tried == [(64, 1, "failed", "oom"), (32, 2, "failed", "oom"), (16, 4, "done", "exit 0")]
    assert big["result"]["argv"] == ["16", "16", "4"]
    log = jobdb("logs", str(big["id"]), "--db", db, cwd=project).stdout
    assert "retry policy sets batch_size = 16 (scheduled 64)" in log
