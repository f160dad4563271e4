"""``jobdb export``: one experiment's rows as the lines of a JSON Lines file.

Everything is read in one snapshot (see :func:`jobdb.transfer.copy.snapshot`)
and streamed: lines are produced as rows arrive, so exporting a large
experiment never holds it in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Select, Table, func, select

from jobdb import __version__
from jobdb.errors import NotFound
from jobdb.transfer import jsonl
from jobdb.transfer.tables import BATCH, read_statement

Advance = Callable[[str, int], None]

_jobs = jsonl.KINDS["job"]


def experiment_id(conn: Connection, name: str) -> int:
    """The id of experiment ``name``; :class:`NotFound` lists the names there are."""
    experiments = jsonl.EXPERIMENTS
    found = conn.execute(select(experiments.c.id).where(experiments.c.name == name)).scalar()
    if found is None:
        names = sorted(conn.execute(select(experiments.c.name)).scalars())
        known = ", ".join(names[:20]) or "none"
        raise NotFound(f"no experiment named {name!r} (experiments: {known})")
    return int(found)


def _rows_of(kind: str, exp_id: int, dialect: str) -> Select[Any]:
    """The rows of ``kind`` that belong to experiment ``exp_id``, in id order."""
    table: Table = jsonl.KINDS[kind]
    statement = read_statement(table, dialect)
    its_jobs = select(_jobs.c.id).where(_jobs.c.experiment_id == exp_id)
    if kind in ("phase", "job"):
        return statement.where(table.c.experiment_id == exp_id)
    if kind == "edge":
        # Both ends: an export never points at a job it does not contain.
        return statement.where(table.c.parent_id.in_(its_jobs), table.c.child_id.in_(its_jobs))
    return statement.where(table.c.job_id.in_(its_jobs))


def count_records(conn: Connection, exp_id: int) -> dict[str, int]:
    """Records per kind that :func:`export_lines` will write."""
    dialect = conn.dialect.name
    return {
        kind: int(
            conn.execute(
                select(func.count()).select_from(_rows_of(kind, exp_id, dialect).subquery())
            ).scalar_one()
        )
        for kind in jsonl.KINDS
    }


def export_lines(
    conn: Connection, exp_id: int, counts: dict[str, int], advance: Advance | None = None
) -> Iterator[str]:
    """The lines of the export (without newlines): the header, then every record."""
    dialect = conn.dialect.name
    experiment = read_statement(jsonl.EXPERIMENTS, dialect).where(jsonl.EXPERIMENTS.c.id == exp_id)
    row = conn.execute(experiment).mappings().one()
    yield jsonl.header_line(row, counts, jobdb_version=__version__)
    for kind in jsonl.KINDS:
        result = conn.execution_options(yield_per=BATCH).execute(_rows_of(kind, exp_id, dialect))
        for partition in result.mappings().partitions():
            for record in partition:
                yield jsonl.record_line(kind, record)
            if advance is not None:
                advance(kind, len(partition))
