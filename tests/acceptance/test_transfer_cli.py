"""``jobdb db copy``, ``jobdb export`` and ``jobdb import`` as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from jobdb.config import sqlite_url
from jobdb.store import connect
from tests.acceptance.cli import db_arg, jobdb
from tests.integration.test_transfer import COUNTS, populate, snapshot_rows


@pytest.fixture
def source(tmp_path: Path) -> URL:
    """A SQLite database with a scheduled, partly run DAG (see ``populate``)."""
    url = sqlite_url(tmp_path / "laptop.sqlite")
    store = connect(url)
    populate(store)
    store.dispose()
    return url


def rows_of(url: URL) -> dict[str, list[dict[str, object]]]:
    store = connect(url)
    try:
        return snapshot_rows(store)
    finally:
        store.dispose()


def status_of(url: URL, cwd: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(
        jobdb("status", "--db", db_arg(url), "--json", cwd=cwd).stdout
    )
    return out


def test_db_copy_then_refuse_then_replace(source: URL, db_url: URL, tmp_path: Path) -> None:
    src, dst = db_arg(source), db_arg(db_url)
    out = jobdb("db", "copy", src, dst, cwd=tmp_path).stdout
    assert "Copied 62 rows; the counts match the source in every table." in out
    assert rows_of(db_url) == rows_of(source)

    refused = jobdb("db", "copy", src, dst, cwd=tmp_path, check=2)
    assert "already holds jobdb data (1 experiments, 3 phases, 10 jobs" in refused.stderr
    assert "--replace" in refused.stderr

    report = json.loads(jobdb("db", "copy", src, dst, "--replace", "--json", cwd=tmp_path).stdout)
    assert report["rows"] == COUNTS
    assert report["replaced"] == COUNTS
    assert status_of(db_url, tmp_path) == status_of(source, tmp_path)


def test_db_copy_never_prints_a_password(source: URL, tmp_path: Path) -> None:
    target = "postgresql+psycopg://me:s3cret@127.0.0.1:1/jobdb"
    proc = jobdb("db", "copy", db_arg(source), target, cwd=tmp_path, check=1)
    assert "s3cret" not in proc.stdout + proc.stderr
    assert "me:***@127.0.0.1:1/jobdb" in proc.stderr


def test_db_copy_from_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    proc = jobdb(
        "db", "copy", "sqlite:///nope.sqlite", "sqlite:///out.sqlite", cwd=tmp_path, check=2
    )
    assert "no such SQLite database: nope.sqlite" in proc.stderr
    assert not (tmp_path / "nope.sqlite").exists()


def test_export_and_import_into_another_database(source: URL, db_url: URL, tmp_path: Path) -> None:
    out = jobdb("export", "transfer-demo", "--db", db_arg(source), cwd=tmp_path).stdout
    assert "Exported transfer-demo (3 phases, 10 jobs, 8 edges, 8 attempts, 32 events)" in out
    exported = tmp_path / "transfer-demo.jsonl"
    header = json.loads(exported.read_text().splitlines()[0])
    assert header["format"] == "jobdb-experiment"

    dst = db_arg(db_url)
    imported = jobdb("import", str(exported), "--db", dst, cwd=tmp_path).stdout
    assert "Imported experiment transfer-demo (3 phases, 10 jobs" in imported
    assert status_of(db_url, tmp_path) == status_of(source, tmp_path)

    again = jobdb("import", str(exported), "--db", dst, cwd=tmp_path, check=2)
    assert "already in this database" in again.stderr
    assert "--as NEW_NAME" in again.stderr
    renamed = jobdb("import", str(exported), "--db", dst, "--as", "demo-2", "--json", cwd=tmp_path)
    assert json.loads(renamed.stdout)["experiment"] == "demo-2"
    experiments = {row["experiment"] for row in status_of(db_url, tmp_path)}
    assert experiments == {"transfer-demo", "demo-2"}


def test_export_to_stdout_and_an_unknown_experiment(source: URL, tmp_path: Path) -> None:
    lines = jobdb("export", "transfer-demo", "-o", "-", "--db", db_arg(source), cwd=tmp_path)
    assert len(lines.stdout.splitlines()) == 1 + 3 + 10 + 8 + 8 + 32
    missing = jobdb("export", "nope", "--db", db_arg(source), cwd=tmp_path, check=2)
    assert "no experiment named 'nope' (experiments: transfer-demo)" in missing.stderr


def test_a_bad_file_names_its_line_and_changes_nothing(source: URL, tmp_path: Path) -> None:
    good = tmp_path / "demo.jsonl"
    jobdb("export", "transfer-demo", "-o", str(good), "--db", db_arg(source), cwd=tmp_path)
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*lines[:4], '{"kind": "job", "id": oops}', *lines[5:]]) + "\n")
    target = sqlite_url(tmp_path / "other.sqlite")
    connect(target).dispose()  # created, empty
    before = rows_of(target)
    proc = jobdb("import", str(bad), "--db", db_arg(target), cwd=tmp_path, check=2)
    assert f"error: {bad}:5: not JSON" in proc.stderr
    assert "nothing was imported" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert rows_of(target) == before
    missing = jobdb("import", "nope.jsonl", "--db", db_arg(target), cwd=tmp_path, check=2)
    assert "no such file: nope.jsonl" in missing.stderr
