"""Finding and stopping a job's program: never another database's job, never a recycled pid."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from jobdb import procs


@pytest.fixture
def program() -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, procs.ENV_JOB_ID: "12", procs.ENV_ATTEMPT: "1", procs.ENV_DATABASE: "db-a"}
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True, env=env)
    yield proc
    proc.kill()
    proc.wait()


def test_another_databases_job_with_the_same_id_is_left_alone(
    program: subprocess.Popen[bytes],
) -> None:
    assert not procs.terminate_job(12, 1, program.pid, grace_s=1, database="db-b")
    assert not procs.terminate_job(12, 1, None, grace_s=1, database="db-b")
    assert program.poll() is None


def test_the_jobs_own_program_is_found_and_stopped(program: subprocess.Popen[bytes]) -> None:
    assert [p.pid for p in procs.job_processes(12, 1, "db-a")] == [program.pid]
    assert procs.terminate_job(12, 1, None, grace_s=1, database="db-a")
    assert program.wait(timeout=10) != 0


def test_a_pid_of_another_attempt_is_not_stopped(program: subprocess.Popen[bytes]) -> None:
    assert not procs.terminate_job(12, 2, program.pid, grace_s=1, database="db-a")
    assert program.poll() is None


def test_tokens_survive_pid_reuse() -> None:
    token = procs.supervisor_token()
    assert procs.token_alive(token) is True
    parsed = procs.parse_token(token)
    assert parsed is not None and parsed.pid == os.getpid()
    stale = str(procs.Token(parsed.host, parsed.pid, parsed.started - 100))
    assert procs.token_alive(stale) is False
    assert procs.token_alive(str(procs.Token("elsewhere", 1, 0.0))) is None
    assert procs.parse_token("not a token") is None
