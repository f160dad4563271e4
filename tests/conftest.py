"""Shared fixtures: a throwaway PostgreSQL cluster and one database per test on each backend.

``db_url`` runs a test twice, on a fresh SQLite file and on a fresh PostgreSQL
database copied from a template that the Alembic migrations built once per
session (a copy takes milliseconds). When a PostgreSQL test fails, the end of
the server log is attached to its report.

Restrict a test to one backend with
``@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from jobdb import testing
from jobdb.config import sqlite_url
from jobdb.store import Store, connect, make_engine, upgrade

TEMPLATE_DB = "jobdb_template"
REQUIRE_POSTGRES_ENV = "JOBDB_REQUIRE_POSTGRES"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

#: The cluster of this session, once started (read by the report hook below).
_cluster: testing.PostgresCluster | None = None
_database_numbers = itertools.count(1)

#: ``new_database(backend, template=None)`` → the URL of a new database.
NewDatabase = Callable[..., URL]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[testing.PostgresCluster]:
    """A PostgreSQL server for the whole session, with a ``jobdb_template`` database at head."""
    global _cluster
    if testing.find_binaries() is None:
        reason = (
            "PostgreSQL server binaries (initdb, pg_ctl) not found; "
            "install Debian's postgresql package to run the PostgreSQL tests"
        )
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        with testing.PostgresCluster.start() as cluster:
            _create_template(cluster)
            _cluster = cluster
            try:
                yield cluster
            finally:
                _cluster = None
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"cannot start PostgreSQL: {exc}\n{exc.stdout}\n{exc.stderr}", pytrace=False)


def _create_template(cluster: testing.PostgresCluster) -> None:
    store = Store(make_engine(cluster.create_database(TEMPLATE_DB)))
    try:
        upgrade(store)
    finally:
        # CREATE DATABASE ... TEMPLATE refuses a template with open connections.
        store.dispose()


@pytest.fixture
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewDatabase]:
    """A factory of new databases: ``new_database(backend, template=None)`` gives a URL.

    ``backend`` is "sqlite" (a file path in tmp_path, not created yet) or
    "postgres" (an empty database, or a copy of ``template``). PostgreSQL
    databases are dropped at teardown.
    """
    created: list[str] = []

    def make(backend: str, template: str | None = None) -> URL:
        number = next(_database_numbers)
        if backend == "sqlite":
            return sqlite_url(tmp_path / f"test_{number}.sqlite")
        if backend != "postgres":
            raise ValueError(f"unknown backend {backend!r}")
        cluster: testing.PostgresCluster = request.getfixturevalue("pg_cluster")
        name = f"test_{number}"
        url = cluster.create_database(name, template=template)
        created.append(name)
        return url

    yield make
    if created:
        cluster = request.getfixturevalue("pg_cluster")
        for name in created:
            cluster.drop_database(name)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, new_database: NewDatabase) -> URL:
    """The URL of a fresh database at the schema head, on SQLite and on PostgreSQL.

    A SQLAlchemy URL; give it to the CLI as ``url.render_as_string(hide_password=False)``.
    """
    backend: str = request.param
    if backend == "sqlite":
        url = new_database("sqlite")
        connect(url).dispose()  # created and upgraded on first use
        return url
    return new_database("postgres", template=TEMPLATE_DB)


@pytest.fixture
def store(db_url: URL) -> Iterator[Store]:
    """An open :class:`Store` on ``db_url``, disposed after the test."""
    opened = connect(db_url)
    try:
        yield opened
    finally:
        opened.dispose()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed and _cluster is not None and item.get_closest_marker("postgres"):
        report.sections.append(("PostgreSQL server log (tail)", _server_log_tail(_cluster)))
    return report


def _server_log_tail(cluster: testing.PostgresCluster, lines: int = 40) -> str:
    # Every CREATE DATABASE logs a checkpoint; without those the errors stay in view.
    kept = [
        line
        for line in cluster.log_tail(lines=1000).splitlines()
        if "LOG:  checkpoint " not in line
    ]
    return "\n".join(kept[-lines:])
