"""Slurm settings are checked when the spec is read: ``jobdb schedule`` refuses bad ones.

The corpus files ``bad/slurm_*.yaml`` (also run by ``test_bad_specs.py``
through :func:`load_spec`) go through the real command here: exit 2, the
file and line in the message, and the database left exactly as it was.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

import pytest

from jobdb.cli import boundary
from jobdb.slurm.options import SlurmOptions, from_settings
from jobdb.spec import parse_spec

BAD = sorted((Path(__file__).parent / "bad").glob("slurm_*.yaml"))
HEADER = re.compile(r"^# (expect|line): (.*)$", re.MULTILINE)

GOOD = """\
name: cluster
settings:
  sbatch_mode: array
  slurm:
    partition: gpu
    account: speech
    qos: normal
    constraint: "a100|h100"
    time: "4:00:00"
    mem: 16G
    max_running: 20
    signal: 120
    extra: ["--exclusive"]
phases:
  - name: train
    command: python train.py
    resources: {gpus: 1, partition: debug, time: 90, mem: 1024, extra: --nice=10}
"""


def content(path: Path) -> str:
    """The database's rows and schema (the file's bytes move with SQLite's checkpoints)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return "\n".join(conn.iterdump())


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A SQLite database that already holds an experiment."""
    spec = tmp_path / "good.yaml"
    spec.write_text(GOOD)
    path = tmp_path / "jobs.sqlite"
    assert boundary.run(["schedule", str(spec), "--db", f"sqlite:///{path}", "--yes"]) == 0
    return path


def test_corpus_has_the_slurm_cases() -> None:
    assert len(BAD) >= 10


@pytest.mark.parametrize("bad", BAD, ids=[p.stem for p in BAD])
def test_schedule_refuses_bad_slurm_settings_and_changes_nothing(
    bad: Path, database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    want = dict(HEADER.findall(bad.read_text()))
    before = content(database)
    capsys.readouterr()
    assert boundary.run(["schedule", str(bad), "--db", f"sqlite:///{database}", "--yes"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:{want['line']}:" in err
    assert want["expect"] in " ".join(err.split())
    assert "Traceback" not in err
    assert content(database) == before


def test_good_settings_read_the_same_at_schedule_and_at_dispatch() -> None:
    spec = parse_spec(GOOD, "good.yaml")
    options = from_settings(spec.settings)
    assert options == SlurmOptions(
        mode="array", partition="gpu", account="speech", qos="normal", constraint="a100|h100",
        time="4:00:00", mem="16G", max_running=20, extra=("--exclusive",), signal_lead_s=120,
    )  # fmt: skip
    resources = spec.phases[0].resources
    assert (resources.partition, resources.time, resources.mem) == ("debug", "90", "1024")
    assert resources.extra == ("--nice=10",)
