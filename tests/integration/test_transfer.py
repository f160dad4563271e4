"""db copy, export and import against real SQLite and PostgreSQL databases.

The database under test is built the way jobdb builds one: a DAG spec
scheduled with ``write_plan``, then jobs driven through the real queries
(claim, start, finish, release) to done, failed, crashed-and-retried,
running, blocked and released, so every table holds the rows jobdb itself
writes, events from the trigger included. Copies are compared row for row,
every column, with SQL NULL kept apart from the JSON ``null``.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, Connection, func, select, update
from sqlalchemy.engine import URL

from jobdb import queries, scheduling
from jobdb.errors import BadInput, SchemaOutOfDate
from jobdb.models import Job
from jobdb.provenance import Provenance
from jobdb.spec import expand, parse_spec
from jobdb.states import State
from jobdb.store import Store, connect
from jobdb.transfer import jsonl
from jobdb.transfer.copy import copy_database, count_rows, open_source
from jobdb.transfer.errors import (
    BadExportFile,
    CountMismatch,
    DestinationNotEmpty,
    ExperimentExists,
    SameDatabase,
)
from jobdb.transfer.export import count_records, experiment_id, export_lines
from jobdb.transfer.importing import import_bundle
from jobdb.transfer.tables import TABLES, is_json, read_statement
from tests.conftest import NewDatabase

ACTOR = "test-transfer"
PROVENANCE = Provenance(
    git_commit="0123abcd" * 5,
    git_dirty=True,
    git_branch="main",
    host="laptop",
    user="ana",
    jobdb_version="0.1.0",
)
SPEC = """\
name: transfer-demo
settings: {note: "résumé ✓"}
phases:
  - name: train
    command: python train.py --lr {lr} --seed {seed}
    grid:
      lr: [0.1, 0.01]
      seed: [1, 2, 3]
    retry: {max_attempts: 2, on: [crashed]}
  - name: eval
    after: train
    group_by: [lr]
    command: python eval.py --lr {lr}
  - name: report
    after: eval
    command: python report.py --lr {lr}
"""


def schedule(store: Store, text: str = SPEC) -> None:
    plan = expand(parse_spec(textwrap.dedent(text), "spec.yaml"))
    with store.write() as conn:
        scheduling.write_plan(conn, plan, PROVENANCE, actor=ACTOR)


def run_one(conn: Connection, job_id: int, verdict: State, **finish: Any) -> None:
    attempt = queries.start(conn, job_id, actor=ACTOR, host="gpu1", pid=4242, gpus="0")
    queries.finish(conn, job_id, attempt, verdict, actor=ACTOR, **finish)


def populate(store: Store) -> None:
    """A realistic mix: done with results, failed (descendants blocked), retried, running..."""
    schedule(store)
    with store.write() as conn:
        train = [job.id for job in queries.claim(conn, 6, actor=ACTOR, executor="local")]
        for n, job_id in enumerate(train[:3]):
            result = {"acc": 0.5 + n / 10, "curve": [1.0, 0.5, 0.25], "note": "ok ✓"}
            run_one(conn, job_id, State.DONE, exit_code=0, result=result)
        run_one(conn, train[3], State.FAILED, exit_code=1, error="Traceback: boom")
        run_one(conn, train[4], State.CRASHED, reason="node lost", retry=True)
        queries.claim(conn, 1, actor=ACTOR, job_ids=[train[4]])
        queries.start(conn, train[4], actor=ACTOR, host="gpu2", pid=99)
        queries.release(conn, [train[5]], actor=ACTOR, reason="sbatch failed")
    with store.write() as conn:
        (evaluation,) = queries.claim(conn, 1, actor=ACTOR)
        run_one(conn, evaluation.id, State.DONE, exit_code=0)  # done, result SQL NULL


#: Rows per table after :func:`populate`.
COUNTS = {"experiments": 1, "phases": 3, "jobs": 10, "edges": 8, "attempts": 8, "events": 32}


def snapshot_rows(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, JSON as ("json", value) so NULL ≠ JSON null."""
    out: dict[str, list[dict[str, Any]]] = {}
    with store.read() as conn:
        for table in TABLES:
            json_names = {c.name for c in table.c if is_json(c)}
            rows = conn.execute(read_statement(table, store.dialect)).mappings()
            out[table.name] = [
                {k: _json_cell(v) if k in json_names else v for k, v in row.items()} for row in rows
            ]
    return out


def _json_cell(text: str | None) -> Any:
    return None if text is None else ("json", json.loads(text))


@pytest.fixture
def source(new_database: NewDatabase) -> Iterator[Store]:
    """A populated SQLite database."""
    store = connect(new_database("sqlite"))
    populate(store)
    yield store
    store.dispose()


def open_new(url: URL) -> Store:
    return Store(connect(url, ensure_schema=False).engine)


# --- db copy -----------------------------------------------------------------------------


@pytest.mark.postgres
def test_copy_sqlite_to_postgres_and_back_is_equal_row_for_row(
    source: Store, new_database: NewDatabase
) -> None:
    before = snapshot_rows(source)
    assert {name: len(rows) for name, rows in before.items()} == COUNTS
    pg = open_new(new_database("postgres"))  # an empty database: the copy creates the schema
    back = open_new(new_database("sqlite"))
    try:
        first = copy_database(source, pg)
        assert snapshot_rows(pg) == before
        second = copy_database(pg, back)
        assert snapshot_rows(back) == before
        assert first.counts == second.counts == {k: len(v) for k, v in before.items()}
        _check_sequences_moved_on(pg, before)
    finally:
        pg.dispose()
        back.dispose()


def _check_sequences_moved_on(store: Store, before: dict[str, list[dict[str, Any]]]) -> None:
    """After a copy with explicit ids, new rows get ids past the copied ones."""
    schedule(store, SPEC.replace("transfer-demo", "after-copy"))
    with store.write() as conn:
        queries.claim(conn, 1, actor=ACTOR, experiment_ids=[experiment_id(conn, "after-copy")])
    after = snapshot_rows(store)
    for table in ("experiments", "phases", "jobs", "attempts", "events"):
        old = {row["id"] for row in before[table]}
        new = [row["id"] for row in after[table] if row["id"] not in old]
        assert new, table
        assert min(new) > max(old), table


def test_copy_refuses_a_destination_with_data_and_leaves_it_unchanged(
    source: Store, db_url: URL
) -> None:
    destination = connect(db_url)
    try:
        schedule(destination, SPEC.replace("transfer-demo", "theirs"))
        held = snapshot_rows(destination)
        with pytest.raises(DestinationNotEmpty, match="already holds jobdb data") as refused:
            copy_database(source, destination)
        assert "--replace" in (refused.value.hint or "")
        assert snapshot_rows(destination) == held
        report = copy_database(source, destination, replace=True)
        assert report.replaced["jobs"] == 10
        assert snapshot_rows(destination) == snapshot_rows(source)
    finally:
        destination.dispose()


def test_copy_into_the_same_database_is_refused(source: Store) -> None:
    with pytest.raises(SameDatabase):
        copy_database(source, Store(source.engine))


def test_copy_from_a_missing_or_schemaless_source_is_refused(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    missing = tmp_path / "nothing.sqlite"
    with pytest.raises(BadInput, match="no such SQLite database"):
        open_source(URL.create("sqlite", database=str(missing)))
    assert not missing.exists()
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    src = open_source(URL.create("sqlite", database=str(empty)))
    dst = open_new(new_database("sqlite"))
    try:
        with pytest.raises(SchemaOutOfDate, match="no jobdb schema"):
            copy_database(src, dst)
    finally:
        src.dispose()
        dst.dispose()
    with sqlite3.connect(empty) as raw:  # only read: no table was created there
        assert raw.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


class _FailHalfway:
    def begin(self, counts: dict[str, int]) -> None:
        pass

    def advance(self, table: str, rows: int) -> None:
        if table == "attempts":
            raise KeyboardInterrupt


def test_an_interrupted_copy_leaves_the_destination_empty(source: Store, db_url: URL) -> None:
    destination = connect(db_url)
    try:
        with pytest.raises(KeyboardInterrupt):
            copy_database(source, destination, progress=_FailHalfway())
        with destination.read() as conn:
            assert set(count_rows(conn).values()) == {0}
    finally:
        destination.dispose()


def test_count_mismatch_rolls_back(
    source: Store, db_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the verification fails, nothing is committed."""
    from jobdb.transfer import copy as copy_module

    real = copy_module.count_rows
    calls = iter(range(100))

    def lying(conn: Connection) -> dict[str, int]:
        counts = real(conn)
        return counts | {"jobs": counts["jobs"] + 1} if next(calls) == 1 else counts

    destination = connect(db_url)
    monkeypatch.setattr(copy_module, "count_rows", lying)
    try:
        with pytest.raises(CountMismatch, match="jobs: 11 in the source, 10 copied"):
            copy_database(source, destination)
        monkeypatch.setattr(copy_module, "count_rows", real)
        with destination.read() as conn:
            assert set(count_rows(conn).values()) == {0}
    finally:
        destination.dispose()


# --- export / import ---------------------------------------------------------------------


def export_text(store: Store, name: str) -> list[str]:
    with store.read() as conn:
        exp_id = experiment_id(conn, name)
        return list(export_lines(conn, exp_id, count_records(conn, exp_id)))


def normalised(lines: list[str]) -> dict[str, Any]:
    """An export with ids replaced by positions: equal for equal experiments anywhere."""
    bundle = jsonl.parse(lines, "export")
    experiment = {k: v for k, v in bundle.experiment.items() if k != "name"}
    position = {
        kind: {row["id"]: n for n, row in enumerate(bundle.rows[kind])} for kind in ("phase", "job")
    }
    refs = {"phase_id": "phase", "parent_id": "job", "child_id": "job", "job_id": "job"}
    rows = {
        kind: [
            {
                k: position[refs[k]][v] if k in refs else v
                for k, v in row.items()
                if k != "id" or kind not in position
            }
            for row in kind_rows
        ]
        for kind, kind_rows in bundle.rows.items()
    }
    return {"experiment": experiment, "rows": rows}


def test_export_then_import_elsewhere_is_the_same_experiment(source: Store, db_url: URL) -> None:
    lines = export_text(source, "transfer-demo")
    destination = connect(db_url)
    try:
        schedule(destination, SPEC.replace("transfer-demo", "already-here"))  # ids differ
        with destination.write() as conn:
            report = import_bundle(conn, jsonl.parse(lines, "f.jsonl"))
        assert report.experiment == "transfer-demo"
        assert report.counts == {"phase": 3, "job": 10, "edge": 8, "attempt": 8, "event": 32}
        again = export_text(destination, "transfer-demo")
        assert normalised(again) == normalised(lines)
        header = json.loads(again[0])
        assert header["experiment"]["git_commit"] == PROVENANCE.git_commit
        assert header["experiment"]["settings"] == {"note": "résumé ✓"}
        _check_imported_jobs_run_on(destination)
    finally:
        destination.dispose()


def _check_imported_jobs_run_on(store: Store) -> None:
    """The imported ready jobs are claimable and their children promoted as usual."""
    with store.write() as conn:
        exp_id = experiment_id(conn, "transfer-demo")
        ready = conn.execute(
            select(Job.id).where(Job.experiment_id == exp_id, Job.state == "ready")
        ).scalars()
        for job_id in ready:
            queries.claim(conn, 1, actor=ACTOR, job_ids=[job_id])
            run_one(conn, job_id, State.DONE, exit_code=0, result={"acc": 1})


def test_import_under_another_name_and_refusal_of_an_existing_name(source: Store) -> None:
    lines = export_text(source, "transfer-demo")
    bundle = jsonl.parse(lines, "f.jsonl")
    before = snapshot_rows(source)
    with pytest.raises(ExperimentExists, match="already in this database"), source.write() as conn:
        import_bundle(conn, bundle)
    assert snapshot_rows(source) == before
    with source.write() as conn:
        report = import_bundle(conn, bundle, name="copy-of-demo")
    assert normalised(export_text(source, "copy-of-demo")) == normalised(lines)
    assert report.experiment_id != experiment_id_of(source, "transfer-demo")


def experiment_id_of(store: Store, name: str) -> int:
    with store.read() as conn:
        return experiment_id(conn, name)


def test_sql_null_and_json_null_results_both_survive_a_copy(source: Store, db_url: URL) -> None:
    """``result IS NULL`` matches the same jobs after a copy (NULL is not the JSON null)."""
    with source.write() as conn:  # jobdb itself writes SQL NULL; a user's tool may not
        first_null = select(func.min(Job.id)).where(Job.result.is_(None)).scalar_subquery()
        conn.execute(update(Job).where(Job.id == first_null).values(result=JSON.NULL))
    destination = connect(db_url)
    try:
        copy_database(source, destination)
        assert _null_results(destination) == _null_results(source) == (6, 7)
    finally:
        destination.dispose()


def _null_results(store: Store) -> tuple[int, int]:
    """(jobs whose result IS NULL, jobs whose result is NULL or the JSON null)."""
    with store.read() as conn:
        sql_null = conn.execute(select(func.count()).where(Job.result.is_(None))).scalar_one()
        rows = snapshot_rows(store)["jobs"]
    return sql_null, sum(1 for row in rows if row["result"] in (None, ("json", None)))


def test_importing_is_one_transaction(source: Store, new_database: NewDatabase) -> None:
    lines = export_text(source, "transfer-demo")
    destination = connect(new_database("sqlite"))

    def interrupt(kind: str, rows: int) -> None:
        if kind == "attempt":
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt), destination.write() as conn:
            import_bundle(conn, jsonl.parse(lines, "f"), advance=interrupt)
        with destination.read() as conn:
            assert set(count_rows(conn).values()) == {0}
    finally:
        destination.dispose()


def _bad(lines: list[str], line: int, value: Any) -> list[str]:
    changed = list(lines)
    changed[line - 1] = value if isinstance(value, str) else json.dumps(value)
    return changed


def _edit(lines: list[str], of_kind: str, /, **changes: Any) -> tuple[list[str], int]:
    """``lines`` with the first record of ``of_kind`` changed (``...``: removed); its line."""
    number = next(n for n, line in enumerate(lines, 1) if json.loads(line)["kind"] == of_kind)
    record = json.loads(lines[number - 1]) | changes
    return _bad(lines, number, {k: v for k, v in record.items() if v is not ...}), number


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not-json", "not JSON"),
        ("not-an-export", "not a jobdb experiment export"),
        ("newer-version", "format version 99"),
        ("unknown-kind", "unknown record kind 'job2'"),
        ("bad-state", "unknown job state 'exploded'"),
        ("bad-type", "priority: expected an integer"),
        ("missing-key", "needs 'params_hash'"),
        ("unknown-key", "unknown key(s) for a job record: colour"),
        ("naive-time", "needs its UTC offset"),
        ("dangling-edge", "refers to job 999999"),
        ("out-of-order", "a phase record after the job records"),
        ("truncated", "the header says 32 event"),
    ],
)
def test_a_bad_file_is_refused_with_its_line_number(source: Store, case: str, message: str) -> None:
    lines = export_text(source, "transfer-demo")
    first_job = next(n for n, line in enumerate(lines, 1) if '"kind": "job"' in line)
    bad, line = {
        "not-json": (_bad(lines, 3, "{nope"), 3),
        "not-an-export": (_bad(lines, 1, {"kind": "header", "format": "x"}), 1),
        "newer-version": (_bad(lines, 1, json.loads(lines[0]) | {"version": 99}), 1),
        "unknown-kind": _edit(lines, "job", kind="job2"),
        "bad-state": _edit(lines, "job", state="exploded"),
        "bad-type": _edit(lines, "job", priority="high"),
        "missing-key": _edit(lines, "job", params_hash=...),
        "unknown-key": _edit(lines, "job", colour="red"),
        "naive-time": _edit(lines, "job", created_at="2024-01-01T10:00:00"),
        "dangling-edge": _edit(lines, "edge", parent_id=999_999),
        "out-of-order": ([*lines[:first_job], lines[1], *lines[first_job:]], first_job + 1),
        "truncated": (lines[:-3], len(lines) - 3),
    }[case]
    with pytest.raises(BadExportFile) as refused:
        jsonl.parse(bad, "exp.jsonl")
    assert refused.value.line == line
    assert f"exp.jsonl:{line}: " in str(refused.value)
    assert message in str(refused.value)


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(BadExportFile, match="empty file"):
        jsonl.parse([], "empty.jsonl")
