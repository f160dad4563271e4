"""``jobdb import``: a parsed export (:class:`~jobdb.transfer.jsonl.Bundle`) into a database.

Everything happens in the caller's transaction, so a failure changes
nothing. Every row gets a new id; the file's ids only say which rows belong
together, and are mapped to the new ones as the rows go in (parents first).
Jobs keep their states, results and attempt history as they were.

These are bulk inserts of rows that already exist elsewhere, not state
transitions, so they live here rather than in :mod:`jobdb.queries`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, insert, select

from jobdb.transfer import jsonl
from jobdb.transfer.errors import ExperimentExists
from jobdb.transfer.tables import BATCH, values_table

Advance = Callable[[str, int], None]
IdMap = dict[int, int]

#: For each kind, its columns that hold ids of other records, and the kind they point at.
REFERENCES: dict[str, dict[str, str]] = {
    "phase": {},
    "job": {"phase_id": "phase"},
    "edge": {"parent_id": "job", "child_id": "job"},
    "attempt": {"job_id": "job"},
    "event": {"job_id": "job"},
}
#: Kinds whose new ids later records need.
MAPPED = ("phase", "job")


@dataclass(frozen=True)
class ImportReport:
    experiment: str
    experiment_id: int
    counts: dict[str, int]


def import_bundle(
    conn: Connection,
    bundle: jsonl.Bundle,
    *,
    name: str | None = None,
    advance: Advance | None = None,
) -> ImportReport:
    """Create the experiment of ``bundle`` (as ``name`` if given) with all its rows."""
    name = name or bundle.experiment["name"]
    _refuse_existing(conn, name)
    exp_id = _insert_experiment(conn, {**bundle.experiment, "name": name})
    maps: dict[str, IdMap] = {}
    for kind, rows in bundle.rows.items():
        fixed = {"experiment_id": exp_id} if kind in ("phase", "job") else {}
        new_rows = [_remap(kind, row, maps) | fixed for row in rows]
        maps[kind] = _insert(conn, jsonl.KINDS[kind], kind, new_rows, advance)
    counts = {kind: len(rows) for kind, rows in bundle.rows.items()}
    return ImportReport(name, exp_id, counts)


def _refuse_existing(conn: Connection, name: str) -> None:
    table = jsonl.EXPERIMENTS
    if conn.execute(select(table.c.id).where(table.c.name == name)).first() is not None:
        raise ExperimentExists(
            f"an experiment named {name!r} is already in this database; nothing was imported",
            hint="import it under another name: jobdb import FILE --as NEW_NAME",
        )


def _insert_experiment(conn: Connection, values: Mapping[str, Any]) -> int:
    table = values_table(jsonl.EXPERIMENTS)
    stmt = insert(table).values(_as_written(jsonl.EXPERIMENTS, values)).returning(table.c.id)
    return int(conn.execute(stmt).scalar_one())


def _remap(kind: str, row: Mapping[str, Any], maps: Mapping[str, IdMap]) -> dict[str, Any]:
    """``row`` with its references turned into the new ids (old ``id`` kept for mapping)."""
    out = dict(row)
    for column, target in REFERENCES[kind].items():
        out[column] = maps[target][row[column]]
    return out


def _insert(
    conn: Connection, table: Table, kind: str, rows: list[dict[str, Any]], advance: Advance | None
) -> IdMap:
    """Insert ``rows`` in batches; for :data:`MAPPED` kinds return old id → new id."""
    target = values_table(table)
    mapped = kind in MAPPED
    stmt = insert(target)
    if mapped:
        stmt = stmt.returning(target.c.id, sort_by_parameter_order=True)
    ids: IdMap = {}
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        values = [_as_written(table, row, drop_id=mapped) for row in batch]
        result = conn.execute(stmt, values)
        if mapped:
            ids.update(zip((row["id"] for row in batch), map(int, result.scalars()), strict=True))
        if advance is not None:
            advance(kind, len(batch))
    return ids


def _as_written(table: Table, row: Mapping[str, Any], *, drop_id: bool = False) -> dict[str, Any]:
    """The row's values for the columns of ``table`` (without ``id`` when renumbering)."""
    return {
        c.name: row[c.name] for c in table.c if c.name in row and not (drop_id and c.name == "id")
    }
