"""Opening a database: engines, transactions, schema version checks.

SQLite is the zero-config default and must survive many writers started at
once, so every connection gets WAL, a long busy timeout and foreign keys,
and write transactions begin ``IMMEDIATE``: the write lock is taken before
the first read, so two processes can never both read a job as ready and then
both claim it (Optuna's SQLite double-run). pysqlite's own transaction
handling is switched off so that jobdb's ``BEGIN`` is the only one.

PostgreSQL gets JIT off: on jobdb's short statements JIT compilation costs
more than it saves.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import (
    DisconnectionError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)

from jobdb import schema
from jobdb.config import display_url
from jobdb.errors import ConfigError, JobDBError, MissingDependency, SchemaOutOfDate, SchemaTooNew

SQLITE_BUSY_TIMEOUT_MS = 60_000
#: A pooled PostgreSQL connection idle longer than this is pinged before use.
PING_AFTER_IDLE_S = 5.0


@dataclass
class Store:
    """An engine plus the transaction discipline jobdb needs on its backend.

    Each thread keeps the connection of its write transactions between them
    (see :meth:`write`); read transactions check one out of the pool.
    """

    engine: Engine
    _local: threading.local = field(
        default_factory=threading.local, init=False, repr=False, compare=False
    )
    _held: list[Connection] = field(default_factory=list, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def url(self) -> URL:
        return self.engine.url

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        return display_url(self.engine.url)

    @property
    def identity(self) -> str:
        """A short id of *which* database this is, the same from any folder or host.

        Job programs carry it in ``$JOBDB_DATABASE`` so that stopping "job 12,
        attempt 1" on a machine never hits another database's job 12.
        """
        url = self.engine.url
        if self.dialect == "sqlite":
            where = os.path.realpath(url.database or ":memory:")
        else:
            where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"
        return hashlib.sha256(f"{self.dialect}:{where}".encode()).hexdigest()[:16]

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success.

        The thread's connection is kept for its next write transaction: a
        worker claiming and finishing jobs in a loop would otherwise pay a
        pool checkout and checkin per transaction, as much as a SQLite
        statement costs, and on SQLite that time is spent holding the write
        lock. A write nested in another gets a connection of its own.
        """
        conn = self._writer()
        if conn.in_transaction():
            with self.engine.begin() as nested:
                yield nested
            return
        try:
            with conn.begin():
                yield conn
        finally:
            self._local.used_at = time.monotonic()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction: on SQLite a deferred one, so it never blocks writers."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="DEFERRED")
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        """Close the kept write connections and the pool."""
        with self._lock:
            held, self._held[:] = list(self._held), []
        for conn in held:
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()
        self.engine.dispose()

    def _writer(self) -> Connection:
        """This thread's write connection, opened on first use and checked after idling.

        A connection idle longer than :data:`PING_AFTER_IDLE_S` is pinged on
        PostgreSQL and replaced if the server dropped it, as the pool does for
        the connections it hands out. A process forked from this one opens its
        own: the parent's socket or SQLite handle is not the child's to use.
        """
        local = self._local
        conn: Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid() and not conn.closed:
            if self.dialect == "sqlite" or time.monotonic() - local.used_at < PING_AFTER_IDLE_S:
                return conn
            if _alive(self.engine, conn):
                return conn
            conn.invalidate()
            self._forget(conn)
        conn = self.engine.connect()
        with self._lock:
            self._held.append(conn)
        local.conn, local.pid, local.used_at = conn, os.getpid(), time.monotonic()
        return conn

    def _forget(self, conn: Connection) -> None:
        with self._lock:
            if conn in self._held:
                self._held.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()


def connect(url: URL, *, ensure_schema: bool = True, echo: bool = False) -> Store:
    """Open the database at ``url`` and check that its schema is current.

    A SQLite database that has no jobdb tables yet is created on first use;
    any other database must be created with ``jobdb init``. An out-of-date
    schema is refused with the exact command that upgrades it.
    """
    store = Store(make_engine(url, echo=echo))
    if ensure_schema:
        try:
            check_schema(store)
        except BaseException:
            store.dispose()  # no pooled connection left behind on refusal
            raise
    return store


def make_engine(url: URL, *, echo: bool = False) -> Engine:
    """An engine configured for jobdb's transaction discipline on this backend."""
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {"echo": echo}
    if backend == "sqlite":
        _ensure_sqlite_folder(url)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    elif backend == "postgresql":
        kwargs["connect_args"] = {"options": "-c jit=off"}
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise MissingDependency(
            f"cannot open {display_url(url)}: {exc}",
            hint="for PostgreSQL install the extra: pip install 'jobdb[postgres]'",
        ) from None
    if backend == "sqlite":
        _configure_sqlite(engine)
    else:
        _ping_idle_connections(engine)
    return engine


def _ensure_sqlite_folder(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).expanduser().parent
        if not folder.is_dir():
            raise ConfigError(f"cannot create the SQLite database {database}: no folder {folder}")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let jobdb emit BEGIN itself (pysqlite would defer it to the first write).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = FULL")
        (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
        if mode.lower() not in ("wal", "memory"):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        # Straight to the driver: exec_driver_sql costs as much as the BEGIN itself,
        # once per transaction (see jobdb.queries.driver).
        conn.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]


def _alive(engine: Engine, conn: Connection) -> bool:
    """Whether the server still answers on ``conn`` (a ping, as the pool's)."""
    try:
        dbapi_connection = conn.connection.dbapi_connection
        return dbapi_connection is not None and bool(engine.dialect.do_ping(dbapi_connection))
    except Exception:
        return False


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a pooled connection before use only if it sat idle for a while.

    ``pool_pre_ping`` pings at every checkout: two of the thirteen round trips
    of a worker's claim → start → finish. A connection in steady use cannot
    have gone stale unnoticed (its last use would have failed), so only one
    idle longer than :data:`PING_AFTER_IDLE_S` is pinged; a dead one is
    replaced by the pool (``DisconnectionError``), as with ``pool_pre_ping``.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_S:
            return  # new, or in steady use
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(str(error)) from error
        if not alive:
            raise DisconnectionError("the pooled connection did not answer a ping")


def check_schema(store: Store) -> None:
    """Refuse a database whose schema is not the one this jobdb was built for."""
    current = current_revision(store)
    if current == schema.HEAD:
        return
    if current is None and store.dialect == "sqlite" and not has_tables(store):
        upgrade(store)
        return
    command = f"jobdb db upgrade --db '{store.display_url}'"
    if current is None:
        raise SchemaOutOfDate(
            f"{store.display_url} has no jobdb schema",
            hint=f"create it with: jobdb init --db '{store.display_url}'",
        )
    if current in schema.REVISIONS:
        raise SchemaOutOfDate(
            f"the schema of {store.display_url} is at revision {current}, "
            f"this jobdb needs {schema.HEAD}",
            hint=f"upgrade it with: {command}",
        )
    raise SchemaTooNew(
        f"the schema of {store.display_url} is at revision {current}, which this jobdb "
        f"({schema.HEAD}) does not know",
        hint="a newer jobdb wrote it: upgrade jobdb (pip install -U jobdb)",
    )


def current_revision(store: Store) -> str | None:
    """The Alembic revision stamped in the database, or None when there is none."""
    try:
        with store.read() as conn:
            row = conn.execute(text(f"SELECT version_num FROM {schema.VERSION_TABLE}")).first()
    except (OperationalError, ProgrammingError) as exc:
        if _is_missing_table(exc):
            return None
        raise _connection_error(store, exc) from None
    return None if row is None else str(row[0])


def has_tables(store: Store) -> bool:
    from sqlalchemy import inspect

    with store.read() as conn:
        return bool(inspect(conn).get_table_names())


def upgrade(store: Store, revision: str = "head") -> tuple[str | None, str | None]:
    """Run the Alembic migrations up to ``revision`` in one transaction.

    Returns the revisions before and after.
    """
    from jobdb import migrate  # Alembic is imported only when a migration runs.

    before = current_revision(store)
    with store.write() as conn:
        migrate.upgrade(conn, revision)
    return before, current_revision(store)


def _is_missing_table(exc: Exception) -> bool:
    message = str(exc).lower()
    return "no such table" in message or ("does not exist" in message and "relation" in message)


def _connection_error(store: Store, exc: Exception) -> JobDBError:
    orig = getattr(exc, "orig", exc)
    return JobDBError(f"cannot use the database {store.display_url}: {orig}".strip())
