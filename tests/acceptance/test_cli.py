"""The CLI as a user types it: ``jobdb`` in a subprocess, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import insert, text
from sqlalchemy.engine import URL

from jobdb import queries, schema
from jobdb.errors import LostRace
from jobdb.models import Edge, Experiment, Job, Phase
from jobdb.states import State
from jobdb.store import connect
from tests.acceptance.cli import db_arg, jobdb


def populate(url: URL) -> dict[str, int]:
    """Two phases of three jobs, train → eval; one train job done, one failed."""
    store = connect(url)
    with store.write() as conn:
        exp = conn.execute(insert(Experiment).values(name="mnist").returning(Experiment.id))
        exp_id = exp.scalar_one()
        train, evaluate = (
            conn.execute(
                insert(Phase)
                .values(experiment_id=exp_id, name=name, position=pos, config={})
                .returning(Phase.id)
            ).scalar_one()
            for pos, name in enumerate(["train", "eval"])
        )
        rows = [
            {
                "experiment_id": exp_id,
                "phase_id": phase,
                "params": {"lr": lr, "opt": "sgd"},
                "params_hash": f"{lr}",
                "state": State.WAITING.value,
            }
            for phase in (train, evaluate)
            for lr in (0.1, 0.01, 0.001)
        ]
        ids = conn.execute(insert(Job).returning(Job.id, sort_by_parameter_order=True), rows)
        job_ids = list(ids.scalars())
        conn.execute(
            insert(Edge),
            [
                {"parent_id": p, "child_id": c}
                for p, c in zip(job_ids[:3], job_ids[3:], strict=True)
            ],
        )
        queries.promote_waiting(conn, actor="test")
    with store.write() as conn:
        for job in queries.claim(conn, 2, actor="test"):
            queries.start(conn, job.id, actor="test", attempt=job.attempt, host="h", pid=1)
        queries.finish(conn, job_ids[0], 1, State.DONE, actor="test", result={"acc": 0.9})
        queries.finish(conn, job_ids[1], 1, State.FAILED, actor="test", exit_code=3, error="boom")
    store.dispose()
    return {"done": job_ids[0], "failed": job_ids[1], "child_of_done": job_ids[3]}


def test_version_and_help(tmp_path: Path) -> None:
    assert jobdb("--version", cwd=tmp_path).stdout.startswith("jobdb ")
    help_text = jobdb("--help", cwd=tmp_path).stdout
    for command in ("init", "status", "list", "show", "db"):
        assert command in help_text
    for command in (["status"], ["list"], ["show"], ["init"], ["db", "upgrade"]):
        assert "--db" in jobdb(*command, "--help", cwd=tmp_path).stdout


def test_init_and_status_on_a_fresh_directory(tmp_path: Path) -> None:
    created = jobdb("init", cwd=tmp_path).stdout
    assert "created the jobdb schema" in created
    assert (tmp_path / "jobdb.sqlite").is_file()
    assert "up to date" in jobdb("init", cwd=tmp_path).stdout
    assert "No experiments" in jobdb("status", cwd=tmp_path).stdout
    assert json.loads(jobdb("status", "--json", cwd=tmp_path).stdout) == []


def test_status_creates_the_default_sqlite_on_first_use(tmp_path: Path) -> None:
    jobdb("status", cwd=tmp_path)
    assert (tmp_path / "jobdb.sqlite").is_file()


def test_nearest_jobdb_toml_wins_over_the_default(tmp_path: Path) -> None:
    (tmp_path / "jobdb.toml").write_text('url = "sqlite:///runs/db.sqlite"\n')
    (tmp_path / "runs").mkdir()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    out = jobdb("status", cwd=deep).stdout
    assert (tmp_path / "runs" / "db.sqlite").is_file()
    assert not (deep / "jobdb.sqlite").exists()
    assert "runs/db.sqlite" in out
    # JOBDB_URL beats the file, --db beats both.
    env_db = tmp_path / "env.sqlite"
    jobdb("status", cwd=deep, env={"JOBDB_URL": f"sqlite:///{env_db}"})
    assert env_db.is_file()
    flag_db = tmp_path / "flag.sqlite"
    jobdb("status", "--db", f"sqlite:///{flag_db}", cwd=deep, env={"JOBDB_URL": "x"})
    assert flag_db.is_file()


def test_status_list_show(db_url: URL, tmp_path: Path) -> None:
    ids = populate(db_url)
    db = db_arg(db_url)

    counts = json.loads(jobdb("status", "--db", db, "--json", cwd=tmp_path).stdout)
    assert counts == [
        {
            "experiment": "mnist",
            "phase": "train",
            "total": 3,
            "counts": {"done": 1, "failed": 1, "ready": 1},
        },
        {
            "experiment": "mnist",
            "phase": "eval",
            "total": 3,
            "counts": {"ready": 1, "blocked": 1, "waiting": 1},
        },
    ]
    table = jobdb("status", "--db", db, cwd=tmp_path).stdout
    assert "6 jobs: 1 waiting, 2 ready, 1 done, 1 failed, 1 blocked" in table

    listed = json.loads(jobdb("list", "--db", db, "--json", cwd=tmp_path).stdout)
    assert len(listed) == 6
    assert {"id", "experiment", "phase", "state", "params", "attempt", "result"} <= set(listed[0])
    done = next(j for j in listed if j["id"] == ids["done"])
    assert done["state"] == "done"
    assert done["result"] == {"acc": 0.9}
    assert done["attempt"] == 1

    def list_ids(*args: str) -> list[int]:
        out = jobdb("list", "--db", db, "--json", *args, cwd=tmp_path).stdout
        return [job["id"] for job in json.loads(out)]

    assert list_ids("--state", "failed") == [ids["failed"]]
    assert list_ids("--state", "done,failed") == [ids["done"], ids["failed"]]
    assert len(list_ids("--where", "lr=0.1")) == 2
    assert list_ids("--where", "lr=0.1", "--phase", "train") == [ids["done"]]
    assert len(list_ids("--where", "opt=sgd")) == 6
    assert list_ids("--where", "opt=adam") == []
    assert len(list_ids("--limit", "2")) == 2
    assert len(list_ids("--experiment", "mnist", "--phase", "eval")) == 3
    assert "showing 2 of 6" in jobdb("list", "--db", db, "-n", "2", cwd=tmp_path).stdout

    shown = json.loads(jobdb("show", str(ids["done"]), "--db", db, "--json", cwd=tmp_path).stdout)
    assert shown["job"]["params"] == {"lr": 0.1, "opt": "sgd"}
    assert shown["children"] == [{"id": ids["child_of_done"], "phase": "eval", "state": "ready"}]
    assert [a["state"] for a in shown["attempts"]] == ["done"]
    assert [(e["from_state"], e["to_state"]) for e in shown["events"]] == [
        ("waiting", "ready"),
        ("ready", "queued"),
        ("queued", "running"),
        ("running", "done"),
    ]
    text_out = jobdb("show", str(ids["failed"]), "--db", db, cwd=tmp_path).stdout
    assert "boom" in text_out
    assert "failed" in text_out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "999"], "no job with id 999"),
        (["show", "abc"], "valid integer"),
        (["list", "--state", "bogus"], "unknown state 'bogus'"),
        (["list", "--where", "lr"], "expected key=value"),
        (["status", "--db", "mysql://x/y"], "unsupported database"),
        (["status", "--db", "not a url"], "not a database URL"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    jobdb("init", cwd=tmp_path)
    proc = jobdb(*args, cwd=tmp_path, check=2)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_status_quiet_and_colours(db_url: URL, tmp_path: Path) -> None:
    """--quiet prints the summary alone; colours only on a terminal (or FORCE_COLOR)."""
    populate(db_url)
    db = db_arg(db_url)
    summary = "6 jobs: 1 waiting, 2 ready, 1 done, 1 failed, 1 blocked\n"
    assert jobdb("status", "--db", db, "--quiet", cwd=tmp_path).stdout == summary
    assert jobdb("status", "--db", db, "-q", "-e", "nothing", cwd=tmp_path).stdout == "0 jobs\n"
    plain = jobdb("status", "--db", db, cwd=tmp_path).stdout
    assert "\x1b[" not in plain  # piped: no escape codes for scripts
    coloured = jobdb("status", "--db", db, cwd=tmp_path, env={"FORCE_COLOR": "1"}).stdout
    assert "\x1b[32m1 done" in coloured  # the summary's "done" in green
    assert re.search(r"\x1b\[31m *1\x1b\[0m", coloured)  # the failed count in the table, red
    refused = jobdb("status", "--db", db, "--quiet", "--json", cwd=tmp_path, check=2)
    assert "exclude each other" in refused.stderr


def test_unreachable_database_exits_1_without_the_password(tmp_path: Path) -> None:
    proc = jobdb("status", "--db", "postgresql://me:s3cret@127.0.0.1:1/x", cwd=tmp_path, check=1)
    assert "127.0.0.1" in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    jobdb("init", cwd=tmp_path)
    store = connect(URL.create("sqlite", database=str(tmp_path / "jobdb.sqlite")))
    with store.write() as conn:
        conn.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = 'ffff'"))
    store.dispose()
    proc = jobdb("status", cwd=tmp_path, check=1)
    assert "ffff" in proc.stderr
    assert "upgrade jobdb" in proc.stderr


def test_an_uninitialised_postgres_database_names_the_init_command(
    db_url: URL, tmp_path: Path
) -> None:
    if db_url.get_backend_name() != "postgresql":
        pytest.skip("SQLite databases are created on first use")
    store = connect(db_url)
    with store.write() as conn:
        conn.execute(text(f"DROP TABLE {schema.VERSION_TABLE}"))
    store.dispose()
    proc = jobdb("status", "--db", db_arg(db_url), cwd=tmp_path, check=1)
    assert "jobdb init --db" in proc.stderr


def test_lost_race_is_reported(db_url: URL) -> None:
    ids = populate(db_url)
    store = connect(db_url)
    with pytest.raises(LostRace) as raised, store.write() as conn:
        queries.transition(
            conn, [ids["done"], ids["child_of_done"]], State.RUNNING, reason="x", actor="t"
        )
    assert f"{ids['done']} is done" in str(raised.value)
    with store.read() as conn:
        states = conn.execute(
            text("SELECT state FROM jobs WHERE id = :i"), {"i": ids["child_of_done"]}
        ).scalar_one()
    assert states == "ready"  # the whole statement was rolled back
    store.dispose()


def _run_wheel_build(repo: Path, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(repo)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (wheel,) = out.glob("jobdb-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_ships_the_migrations(tmp_path: Path) -> None:
    """Built and installed (no source tree on the path), ``jobdb init`` works anywhere."""
    repo = Path(__file__).resolve().parents[2]
    wheel = _run_wheel_build(repo, tmp_path / "dist")
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (target / "jobdb" / "migrations" / "env.py").is_file()
    assert list((target / "jobdb" / "migrations" / "versions").glob("0001_*.py"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import jobdb; "
        "assert jobdb.__file__.startswith(sys.argv[1]), jobdb.__file__; "
        "from jobdb.cli.boundary import run; sys.exit(run(['init']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "created the jobdb schema" in proc.stdout
    assert (elsewhere / "jobdb.sqlite").is_file()
