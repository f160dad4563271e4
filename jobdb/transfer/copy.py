"""``jobdb db copy``: a whole database, table by table, into another one.

The copy is exact: every row of every jobdb table keeps its id (so edges,
attempts and events still point at the right jobs), its timestamps and its
JSON; PostgreSQL sequences are moved past the copied ids afterwards.

- The source is read in one snapshot (a deferred transaction on SQLite,
  ``REPEATABLE READ`` on PostgreSQL) and streamed in partitions, so a
  million jobs never sit in memory at once.
- The destination is written in **one** transaction: a failure, a refusal
  or Ctrl-C leaves it as it was (its schema may have been created first,
  which is what ``jobdb init`` would do). The row counts are compared with
  the source's inside that transaction, before the commit.
- A destination that already holds data is refused; ``replace=True``
  deletes that data in the same transaction, so the result is an exact copy
  of the source either way. Merging two databases is not offered: ids would
  collide (move single experiments with export/import instead).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Row, Table, func, select, text
from sqlalchemy.engine import URL

from jobdb import schema
from jobdb.errors import BadInput, SchemaOutOfDate
from jobdb.sqltypes import UTCDateTime
from jobdb.store import Store, check_schema, current_revision, make_engine, upgrade
from jobdb.transfer.errors import CountMismatch, DestinationNotEmpty, SameDatabase
from jobdb.transfer.tables import BATCH, SEQUENCED, TABLES, read_statement

#: How SQLAlchemy stores a datetime on SQLite (``DATETIME``'s storage format).
SQLITE_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"


class CopyProgress(Protocol):
    """What the copy reports as it goes (the CLI draws a progress bar from it)."""

    def begin(self, counts: dict[str, int]) -> None: ...

    def advance(self, table: str, rows: int) -> None: ...


class _Silent:
    def begin(self, counts: dict[str, int]) -> None:
        pass

    def advance(self, table: str, rows: int) -> None:
        pass


@dataclass
class CopyReport:
    """What a copy did: rows per table (verified equal on both sides)."""

    source: str
    destination: str
    counts: dict[str, int] = field(default_factory=dict)
    #: Rows per table deleted from the destination first (``replace``).
    replaced: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def open_source(url: URL) -> Store:
    """The source store; a SQLite file that does not exist is an error, not created."""
    if url.get_backend_name() == "sqlite" and not _sqlite_file_exists(url):
        raise BadInput(f"no such SQLite database: {url.database}")
    return Store(make_engine(url))


def _sqlite_file_exists(url: URL) -> bool:
    database = url.database or ""
    return database.startswith("file:") or Path(database).expanduser().is_file()


def copy_database(
    src: Store, dst: Store, *, replace: bool = False, progress: CopyProgress | None = None
) -> CopyReport:
    """Copy every jobdb row of ``src`` into ``dst`` (created or upgraded to the head schema)."""
    progress = progress or _Silent()
    if src.identity == dst.identity:
        raise SameDatabase(f"{src.display_url} is both the source and the destination")
    check_source(src)
    prepare_destination(dst, replace=replace)
    report = CopyReport(src.display_url, dst.display_url)
    with snapshot(src) as read, dst.write() as write:
        counts = count_rows(read)
        report.replaced = _clear(write, dst.display_url, replace=replace)
        progress.begin(counts)
        for table in TABLES:
            _copy_table(read, write, table, progress)
        if dst.dialect == "postgresql":
            reset_sequences(write)
        verify(counts, count_rows(write))
        report.counts = counts
    return report


def check_source(src: Store) -> None:
    """The source must have jobdb's schema at this jobdb's revision (never touched here)."""
    revision = current_revision(src)
    if revision == schema.HEAD:
        return
    if revision is None:
        raise SchemaOutOfDate(f"{src.display_url} has no jobdb schema: nothing to copy")
    check_schema(src)  # raises the out-of-date or too-new error, with its hint


def prepare_destination(dst: Store, *, replace: bool) -> None:
    """Refuse a destination with data (unless ``replace``), then create/upgrade its schema.

    The refusal comes before the upgrade, so a refused destination is left
    exactly as it was.
    """
    revision = current_revision(dst)
    if revision is not None:
        if revision not in schema.REVISIONS:
            check_schema(dst)  # too new: raises
        if not replace:
            _refuse_data(dst.display_url, _counts_of(dst))
    upgrade(dst)


def _counts_of(store: Store) -> dict[str, int]:
    with store.read() as conn:
        return count_rows(conn)


def _refuse_data(where: str, counts: dict[str, int]) -> None:
    held = {name: n for name, n in counts.items() if n}
    if held:
        listed = ", ".join(f"{n} {name}" for name, n in held.items())
        raise DestinationNotEmpty(
            f"{where} already holds jobdb data ({listed})",
            hint="copy into an empty database, or add --replace to delete that data first",
        )


def _clear(conn: Connection, where: str, *, replace: bool) -> dict[str, int]:
    """Delete the destination's rows (children first) when replacing; else re-check emptiness."""
    counts = count_rows(conn)
    if not replace:
        _refuse_data(where, counts)  # someone wrote since the first check
        return {}
    for table in reversed(TABLES):
        conn.execute(table.delete())
    return {name: n for name, n in counts.items() if n}


@contextlib.contextmanager
def snapshot(store: Store) -> Iterator[Connection]:
    """A read transaction that sees one consistent state of the whole database."""
    if store.dialect != "postgresql":
        with store.read() as conn:  # SQLite (WAL): a read transaction is a snapshot
            yield conn
        return
    with store.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def count_rows(conn: Connection) -> dict[str, int]:
    """Rows per jobdb table."""
    return {
        table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        for table in TABLES
    }


def _copy_table(read: Connection, write: Connection, table: Table, progress: CopyProgress) -> None:
    """Stream ``table`` from ``read`` into ``write``, one partition at a time."""
    source = read_statement(table, read.dialect.name)
    partitions = read.execution_options(yield_per=BATCH).execute(source).partitions()
    if write.dialect.name == "postgresql":
        _copy_into_postgres(write, table, partitions, progress)
    else:
        _copy_into_sqlite(write, table, partitions, progress)


def _copy_into_sqlite(
    conn: Connection, table: Table, partitions: Iterator[Sequence[Row[Any]]], progress: CopyProgress
) -> None:
    """``executemany`` straight to the driver (SQLAlchemy's per-row parameter
    handling cost three times the insert itself), timestamps written as
    :class:`~jobdb.sqltypes.UTCDateTime` writes them on SQLite: naive UTC text.
    """
    columns = ", ".join(f'"{c.name}"' for c in table.c)
    marks = ", ".join("?" for _ in table.c)
    sql = f"INSERT INTO {table.name} ({columns}) VALUES ({marks})"
    stamps = [i for i, c in enumerate(table.c) if isinstance(c.type, UTCDateTime)]
    for partition in partitions:
        conn.exec_driver_sql(sql, [_sqlite_row(row, stamps) for row in partition])
        progress.advance(table.name, len(partition))


def _sqlite_row(row: Sequence[Any], stamps: Sequence[int]) -> tuple[Any, ...]:
    values = list(row)
    for i in stamps:
        if values[i] is not None:
            values[i] = values[i].astimezone(dt.UTC).strftime(SQLITE_TIMESTAMP)
    return tuple(values)


def _copy_into_postgres(
    conn: Connection, table: Table, partitions: Iterator[Sequence[Row[Any]]], progress: CopyProgress
) -> None:
    """PostgreSQL's ``COPY … FROM STDIN``: an ``executemany`` is one statement per row
    (pipelined, still about ten times slower at 100,000 rows).

    The rows come in the table's column order, typed by SQLAlchemy (aware
    datetimes, JSON as text, which ``jsonb`` parses on the way in).
    """
    columns = ", ".join(f'"{c.name}"' for c in table.c)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor, cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
        for partition in partitions:
            for row in partition:
                copy.write_row(row)
            progress.advance(table.name, len(partition))


def reset_sequences(conn: Connection) -> None:
    """Move each PostgreSQL id sequence past the largest copied id.

    Rows inserted with explicit ids do not advance a sequence; without this
    the next scheduled job would collide with job 1.
    """
    for table in SEQUENCED:
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
            )
        )


def verify(expected: dict[str, int], found: dict[str, int]) -> None:
    """Fail (and so roll the destination back) unless every table has the source's rows."""
    wrong = {name: (n, found.get(name, 0)) for name, n in expected.items() if found.get(name) != n}
    if wrong:
        detail = ", ".join(
            f"{name}: {a} in the source, {b} copied" for name, (a, b) in wrong.items()
        )
        raise CountMismatch(f"the copy is incomplete ({detail}); the destination was rolled back")
