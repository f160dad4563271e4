"""``jobdb results``, ``best`` and ``plot`` as a user types them, on both backends.

The database holds the cross-validation grid of ``tests/integration/test_results.py``
(lr × model × 2 folds, every job done with a result); the expected figures
are the hand-computed ones documented there.
"""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from jobdb.store import connect
from tests.acceptance.cli import db_arg, jobdb
from tests.integration.test_results import schedule_and_finish

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def db(db_url: URL) -> str:
    store = connect(db_url)
    try:
        schedule_and_finish(store)
    finally:
        store.dispose()
    return db_arg(db_url)


def test_grouped_results_as_json(db: str, tmp_path: Path) -> None:
    out = jobdb("results", "--db", db, "-e", "cv", "-g", "lr,model", "--json", cwd=tmp_path)
    rows = json.loads(out.stdout)
    got = {(r["group"]["lr"], r["group"]["model"]): r for r in rows}
    big = got[(0.01, "big")]
    assert big["n"] == 2
    assert big["metrics"]["acc"]["mean"] == pytest.approx(0.90)
    assert big["metrics"]["acc"]["std"] == pytest.approx(0.0707107, abs=1e-6)
    assert big["metrics"]["val.loss"]["mean"] == pytest.approx(0.10)


def test_sorted_top_rows_as_csv(db: str, tmp_path: Path) -> None:
    args = ["results", "--db", db, "-g", "lr", "-g", "model", "-m", "acc"]
    out = jobdb(*args, "--sort", "acc", "--desc", "--top", "2", "--csv", cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0]) == ["lr", "model", "n", "acc.mean", "acc.std", "acc.n"]
    assert [(r["lr"], r["model"]) for r in rows] == [("0.01", "big"), ("0.1", "small")]
    assert float(rows[1]["acc.mean"]) == pytest.approx(0.85)


def test_per_job_table_and_markdown(db: str, tmp_path: Path) -> None:
    table = jobdb("results", "--db", db, "--where", "model=big,acc>0.8", cwd=tmp_path).stdout
    assert "0.95" in table and "0.85" in table and "0.74" not in table
    markdown = jobdb("results", "--db", db, "-w", "lr=0.1", "--markdown", cwd=tmp_path).stdout
    lines = markdown.splitlines()
    assert lines[0] == "| id | fold | model | acc | curve | ok | val.loss |"
    assert len(lines) == 2 + 4


def test_bad_input_is_one_clear_error(db: str, tmp_path: Path) -> None:
    bad_where = jobdb("results", "--db", db, "--where", "lr>>1", cwd=tmp_path, check=2)
    assert "--where 'lr>>1'" in bad_where.stderr and "Traceback" not in bad_where.stderr
    unknown = jobdb("results", "--db", db, "-g", "lr", "-m", "f1", cwd=tmp_path, check=2)
    assert "no metric 'f1'" in unknown.stderr and "acc, val.loss" in unknown.stderr
    sort = jobdb("results", "--db", db, "--sort", "nope", cwd=tmp_path, check=2)
    assert "--sort 'nope'" in sort.stderr
    two = jobdb("results", "--db", db, "--csv", "--json", cwd=tmp_path, check=2)
    assert "choose one of" in two.stderr
    mode = jobdb("best", "acc", "--mode", "up", "--db", db, cwd=tmp_path, check=2)
    assert "expected min or max" in mode.stderr


def test_best_prints_the_select_winner(db: str, tmp_path: Path) -> None:
    out = jobdb("best", "acc", "--mode", "max", "-g", "lr,model", "--db", db, cwd=tmp_path)
    assert 'selected lr=0.01 model="big": mean acc = 0.9 over 2 job(s)' in out.stdout
    data = json.loads(
        jobdb(
            "best",
            "val.loss",
            "--mode",
            "min",
            "-g",
            "lr",
            "--top",
            "2",
            "--json",
            "--db",
            db,
            cwd=tmp_path,
        ).stdout
    )
    assert data["winner"]["values"] == {"lr": 0.1}
    assert data["winner"]["score"] == pytest.approx(0.215)
    assert [c["values"]["lr"] for c in data["ranking"]] == [0.1, 0.01]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_plot_writes_a_png_of_plausible_size(db: str, tmp_path: Path) -> None:
    target = tmp_path / "acc.png"
    out = jobdb("plot", "acc", "--x", "lr", "--line", "model", "-o", str(target), "--json",
                "--db", db, cwd=tmp_path)  # fmt: skip
    data = json.loads(out.stdout)
    content = target.read_bytes()
    assert content[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", content[16:24])
    assert (width, height) == (700, 450)
    assert 10_000 < len(content) < 500_000 and data["bytes"] == len(content)
    assert [s["label"] for s in data["series"]] == ["model=big", "model=small"]
    assert data["series"][0]["y"] == pytest.approx([0.90, 0.72])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_list_metric_gives_a_learning_curve(db: str, tmp_path: Path) -> None:
    target = tmp_path / "curve.png"
    out = jobdb("plot", "curve", "--line", "lr", "-o", str(target), "--json", "--db", db,
                cwd=tmp_path)  # fmt: skip
    data = json.loads(out.stdout)
    assert data["kind"] == "curve" and data["x_label"] == "step"
    assert target.read_bytes()[:8] == PNG_SIGNATURE
