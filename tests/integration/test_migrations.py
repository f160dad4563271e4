"""The Alembic migrations build exactly the schema of the models, and old schemas are refused."""

from __future__ import annotations

import contextlib
import os
import re
import traceback
from collections.abc import Iterator
from typing import Any, cast

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import QueuePool

from jobdb import migrate, queries, schema, triggers
from jobdb.config import display_url
from jobdb.errors import ConfigError, SchemaOutOfDate, SchemaTooNew
from jobdb.models import metadata
from jobdb.store import Store, check_schema, connect, current_revision, make_engine, upgrade
from tests.conftest import NewDatabase

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
PASSWORD = "pa55-w0rd-xyz"
TABLES = ["attempts", "edges", "events", "experiments", "jobs", "phases"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def _open(url: URL) -> Iterator[Store]:
    store = Store(make_engine(url))
    try:
        yield store
    finally:
        store.dispose()


@pytest.fixture
def migrated(backend: str, new_database: NewDatabase) -> Iterator[Store]:
    """An empty database brought to head by the migrations."""
    with _open(new_database(backend)) as store:
        assert upgrade(store) == (None, schema.HEAD)
        yield store


@pytest.fixture
def created(backend: str, new_database: NewDatabase) -> Iterator[Store]:
    """An empty database filled by ``metadata.create_all()``."""
    with _open(new_database(backend)) as store:
        metadata.create_all(store.engine)
        yield store


# --------------------------------------------------------------------------
# snapshots of a schema


def _sql(text_: str | None) -> str:
    """DDL with whitespace normalised, so formatting differences do not count."""
    return re.sub(r"\s+", " ", text_ or "").strip()


def _snapshot(conn: Connection) -> dict[str, Any]:
    insp = inspect(conn)
    dialect = conn.dialect
    tables = sorted(set(insp.get_table_names()) - {schema.VERSION_TABLE})
    snap: dict[str, Any] = {"tables": tables}
    for table in tables:
        snap[f"{table}.columns"] = [
            (
                col["name"],
                col["type"].compile(dialect=dialect),
                col["nullable"],
                _sql(str(col["default"])) if col.get("default") is not None else None,
            )
            for col in insp.get_columns(table)
        ]
        pk = insp.get_pk_constraint(table)
        snap[f"{table}.pk"] = (pk["name"], pk["constrained_columns"])
        snap[f"{table}.indexes"] = sorted(
            (
                ix["name"],
                tuple(ix["column_names"]),
                bool(ix["unique"]),
                sorted((ix.get("column_sorting") or {}).items()),
            )
            for ix in insp.get_indexes(table)
        )
        snap[f"{table}.uniques"] = sorted(
            (uq["name"], tuple(uq["column_names"])) for uq in insp.get_unique_constraints(table)
        )
        snap[f"{table}.checks"] = sorted(
            (ck["name"], _sql(ck["sqltext"])) for ck in insp.get_check_constraints(table)
        )
        snap[f"{table}.fks"] = sorted(
            (
                fk["name"],
                tuple(fk["constrained_columns"]),
                fk["referred_table"],
                tuple(fk["referred_columns"]),
                sorted(fk.get("options", {}).items()),
            )
            for fk in insp.get_foreign_keys(table)
        )
    snap["ddl"] = _raw_ddl(conn)
    return snap


def _raw_ddl(conn: Connection) -> list[tuple[str, str, str]]:
    """The database's own text of every index, trigger and function (what it will run)."""
    if conn.dialect.name == "sqlite":
        rows = conn.execute(
            text(
                "SELECT type, name, sql FROM sqlite_master "
                "WHERE type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name"
            )
        )
    else:
        rows = conn.execute(
            text(
                "SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                f"AND tablename <> '{schema.VERSION_TABLE}' "
                "UNION ALL SELECT 'trigger', tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                "WHERE NOT tgisinternal "
                "UNION ALL SELECT 'function', proname, pg_get_functiondef(p.oid) FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' "
                "ORDER BY 1, 2"
            )
        )
    return [(kind, name, _sql(sql)) for kind, name, sql in rows]


def _triggers(conn: Connection) -> list[str]:
    """The triggers on ``jobs``, sorted."""
    if conn.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'jobs'"
    else:
        query = (
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'jobs'::regclass AND NOT tgisinternal"
        )
    return sorted(conn.execute(text(query)).scalars())


def _diffs(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "version_table": schema.VERSION_TABLE,
        },
    )
    return list(compare_metadata(context, metadata))


# --------------------------------------------------------------------------
# upgrade head == create_all


def test_upgrade_head_matches_the_models(migrated: Store) -> None:
    with migrated.read() as conn:
        assert _diffs(conn) == []


def test_create_all_matches_the_models(created: Store) -> None:
    with created.read() as conn:
        assert _diffs(conn) == []


def test_upgrade_head_and_create_all_build_the_same_schema(migrated: Store, created: Store) -> None:
    with migrated.read() as a, created.read() as b:
        from_migrations, from_models = _snapshot(a), _snapshot(b)
    assert from_migrations["tables"] == TABLES
    assert from_migrations == from_models
    # The snapshot is not vacuous: it sees the claim index with its DESC column and the checks.
    assert ("ix_jobs_claim", ("state", "priority", "id", "phase_id", "experiment_id")) in [
        ix[:2] for ix in from_migrations["jobs.indexes"]
    ]
    assert [name for name, _ in from_migrations["jobs.checks"]] == [
        "ck_jobs_attempt_nonnegative",
        "ck_jobs_max_attempts_positive",
        "ck_jobs_state",
    ]
    assert [name for name, _ in from_migrations["edges.checks"]] == ["ck_edges_no_self_edge"]
    assert any(
        "priority DESC" in sql for _, name, sql in from_migrations["ddl"] if name == "ix_jobs_claim"
    )


def test_the_triggers_exist_both_ways(migrated: Store, created: Store) -> None:
    dialect = migrated.dialect
    expected = [triggers.TRIGGER_NAME]
    if dialect == "sqlite":
        expected.append(triggers.ATTEMPT_TRIGGER_NAME)
    with migrated.read() as a, created.read() as b:
        assert _triggers(a) == triggers.names(dialect) == sorted(expected)
        assert _triggers(b) == triggers.names(dialect)


def test_only_the_migrated_database_is_stamped(migrated: Store, created: Store) -> None:
    assert current_revision(migrated) == schema.HEAD
    assert current_revision(created) is None
    with migrated.read() as conn:
        assert schema.VERSION_TABLE in inspect(conn).get_table_names()
        assert "alembic_version" not in inspect(conn).get_table_names()


def test_upgrade_twice_is_a_no_op(migrated: Store) -> None:
    assert upgrade(migrated) == (schema.HEAD, schema.HEAD)


def test_downgrade_to_base_removes_everything_and_upgrade_restores_it(migrated: Store) -> None:
    with migrated.write() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    with migrated.read() as conn:
        assert set(inspect(conn).get_table_names()) <= {schema.VERSION_TABLE}
        if conn.dialect.name == "sqlite":
            leftovers = (
                "SELECT name FROM sqlite_master WHERE type IN ('trigger', 'index') "
                f"AND tbl_name <> '{schema.VERSION_TABLE}'"
            )
        else:
            leftovers = f"SELECT proname FROM pg_proc WHERE proname = '{triggers.FUNCTION_NAME}'"
        assert conn.execute(text(leftovers)).all() == []
    assert current_revision(migrated) is None
    assert upgrade(migrated) == (None, schema.HEAD)
    with migrated.read() as conn:
        assert _diffs(conn) == []
        assert _triggers(conn) == triggers.names(conn.dialect.name)


#: An experiment with one phase, as raw SQL that any revision accepts.
ONE_PHASE = (
    "INSERT INTO experiments (id, name, spec_text, spec_format, spec_hash, settings) "
    "VALUES (1, 'e', '', 'yaml', '', '{}')",
    "INSERT INTO phases (id, experiment_id, name, position, config) VALUES (1, 1, 'p', 0, '{}')",
)


def test_0003_turns_stored_json_nulls_into_sql_nulls(migrated: Store) -> None:
    with migrated.write() as conn:
        command.downgrade(migrate.alembic_config(conn), "0002")
        for statement in (
            *ONE_PHASE,
            "INSERT INTO jobs (id, experiment_id, phase_id, params, params_hash, state, "
            "priority, attempt, max_attempts, result) "
            "VALUES (1, 1, 1, '{}', 'h1', 'crashed', 0, 1, 1, 'null'), "
            "(2, 1, 1, '{}', 'h2', 'done', 0, 1, 1, '{\"loss\": 1}')",
            "INSERT INTO attempts (job_id, number, state, params, result) "
            "VALUES (1, 1, 'crashed', 'null', 'null'), (2, 1, 'done', '{}', '{\"loss\": 1}')",
        ):
            conn.execute(text(statement))
    assert upgrade(migrated) == ("0002", schema.HEAD)
    with migrated.read() as conn:
        for query in (
            "SELECT id FROM jobs WHERE result IS NOT NULL",
            "SELECT job_id FROM attempts WHERE result IS NOT NULL",
            "SELECT job_id FROM attempts WHERE params IS NOT NULL",
        ):
            assert conn.execute(text(query)).scalars().all() == [2], query


def test_0004_claims_write_one_attempt_row_after_the_upgrade(migrated: Store) -> None:
    """A job ready before 0004 is claimed with one attempt row: on SQLite the trigger's,
    which replaces the claim's second statement, not one of each."""
    with migrated.write() as conn:
        command.downgrade(migrate.alembic_config(conn), "0003")
        for statement in (
            *ONE_PHASE,
            "INSERT INTO jobs (id, experiment_id, phase_id, params, params_hash, state, "
            "priority, attempt, max_attempts) "
            "VALUES (1, 1, 1, '{\"lr\": 0.1}', 'h1', 'ready', 0, 1, 2)",
            "INSERT INTO attempts (job_id, number, state) VALUES (1, 1, 'failed')",
        ):
            conn.execute(text(statement))
    with migrated.read() as conn:
        assert _triggers(conn) == [triggers.TRIGGER_NAME]
    assert upgrade(migrated) == ("0003", schema.HEAD)
    with migrated.write() as conn:
        (job,) = queries.claim(conn, 1, actor="test", executor="local", worker="w1")
    assert (job.id, job.attempt) == (1, 2)
    with migrated.read() as conn:
        rows = conn.execute(
            text("SELECT number, state, params, executor, worker FROM attempts ORDER BY number")
        ).all()
        assert _diffs(conn) == []
    assert [tuple(row) for row in rows] == [
        (1, "failed", None, None, None),
        (2, "queued", {"lr": 0.1} if migrated.dialect == "postgresql" else '{"lr": 0.1}',
         "local", "w1"),
    ]  # fmt: skip


def test_revisions_match_the_migration_scripts() -> None:
    assert list(schema.REVISIONS) == migrate.script_revisions()
    assert schema.HEAD == schema.REVISIONS[-1]
    assert len(set(schema.REVISIONS)) == len(schema.REVISIONS)


# --------------------------------------------------------------------------
# check_schema: refusing databases that are not at head


def _with_password(url: URL) -> URL:
    # The throwaway server trusts every local connection, so any password is accepted.
    return url.set(password=PASSWORD) if url.get_backend_name() == "postgresql" else url


def _stamp(url: URL, revision: str) -> None:
    with _open(url) as store:
        with store.write() as conn:
            conn.execute(
                text(f"UPDATE {schema.VERSION_TABLE} SET version_num = :rev"), {"rev": revision}
            )


def _assert_no_password(exc: BaseException) -> None:
    assert PASSWORD not in str(exc)
    assert PASSWORD not in str(getattr(exc, "hint", ""))


def _refusal(url: URL, expected: type[Exception]) -> Any:
    """check_schema's error for the database at ``url`` (the store is closed afterwards)."""
    with _open(url) as store:
        with pytest.raises(expected) as info:
            check_schema(store)
    return info.value


def test_a_current_schema_is_accepted(db_url: URL) -> None:
    store = connect(_with_password(db_url))
    try:
        check_schema(store)
        assert current_revision(store) == schema.HEAD
    finally:
        store.dispose()


def test_an_older_schema_is_refused_with_the_upgrade_command(
    db_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "REVISIONS", ("0000", *schema.REVISIONS))
    _stamp(db_url, "0000")
    url = _with_password(db_url)
    error = _refusal(url, SchemaOutOfDate)
    hint = error.hint or ""
    assert f"jobdb db upgrade --db '{display_url(url)}'" in hint
    assert "0000" in str(error)
    assert schema.HEAD in str(error)
    assert error.exit_code == 1
    _assert_no_password(error)
    if url.get_backend_name() == "postgresql":
        assert f"jobdb:***@127.0.0.1:{url.port}/{url.database}'" in hint
    # Refusing changed nothing: the database still says 0000.
    with _open(db_url) as store:
        assert current_revision(store) == "0000"


def test_an_unknown_revision_is_too_new(db_url: URL) -> None:
    _stamp(db_url, "9999_from_the_future")
    error = _refusal(_with_password(db_url), SchemaTooNew)
    assert "9999_from_the_future" in str(error)
    assert "upgrade jobdb" in (error.hint or "")
    _assert_no_password(error)


@pytest.mark.postgres
def test_an_empty_postgres_database_needs_jobdb_init(new_database: NewDatabase) -> None:
    url = _with_password(new_database("postgres"))
    error = _refusal(url, SchemaOutOfDate)
    assert f"jobdb init --db '{display_url(url)}'" in (error.hint or "")
    _assert_no_password(error)
    with _open(url) as store:
        with store.read() as conn:
            assert inspect(conn).get_table_names() == []  # nothing was created


def _store_left_by(info: pytest.ExceptionInfo[Exception]) -> Store | None:
    """The Store that a failed ``connect()`` created (found in its traceback frame)."""
    for frame, _ in traceback.walk_tb(info.tb):
        if frame.f_code is connect.__code__:
            found = frame.f_locals.get("store")
            return found if isinstance(found, Store) else None
    return None


def test_a_refused_connect_leaves_no_connection_open(db_url: URL) -> None:
    _stamp(db_url, "9999_from_the_future")
    with pytest.raises(SchemaTooNew) as info:
        connect(db_url)
    leaked = _store_left_by(info)
    assert leaked is not None
    try:
        assert cast(QueuePool, leaked.engine.pool).checkedin() == 0
    finally:
        leaked.dispose()


def test_a_new_sqlite_file_is_created_on_first_use(new_database: NewDatabase) -> None:
    url = new_database("sqlite")
    path = url.database or ""
    assert path
    assert not os.path.exists(path)
    store = connect(url)
    try:
        assert current_revision(store) == schema.HEAD
        with store.read() as conn:
            assert sorted(set(inspect(conn).get_table_names()) - {schema.VERSION_TABLE}) == TABLES
            assert _diffs(conn) == []
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.dispose()


def test_connect_without_schema_check_creates_nothing(new_database: NewDatabase) -> None:
    url = new_database("sqlite")
    store = connect(url, ensure_schema=False)
    try:
        assert current_revision(store) is None
    finally:
        store.dispose()


def test_a_sqlite_file_with_foreign_tables_is_not_taken_over(new_database: NewDatabase) -> None:
    url = new_database("sqlite")
    with _open(url) as store:
        with store.write() as conn:
            conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    error = _refusal(url, SchemaOutOfDate)
    assert f"jobdb init --db '{display_url(url)}'" in (error.hint or "")
    with _open(url) as store:
        with store.read() as conn:
            assert inspect(conn).get_table_names() == ["notes"]


def test_a_sqlite_file_in_a_missing_folder_is_a_config_error(tmp_path: Any) -> None:
    url = URL.create("sqlite", database=str(tmp_path / "no" / "such" / "jobdb.sqlite"))
    with pytest.raises(ConfigError, match="no folder") as info:
        connect(url)
    assert info.value.exit_code == 2
