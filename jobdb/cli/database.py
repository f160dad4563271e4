"""``jobdb init`` and ``jobdb db upgrade``: create and upgrade the schema."""

from __future__ import annotations

import typer

from jobdb import schema
from jobdb.cli.app import app, db_app
from jobdb.cli.common import DbOption
from jobdb.cli.render import console
from jobdb.config import resolve_url
from jobdb.store import Store, make_engine, upgrade


def _upgrade(db: str | None, revision: str = "head") -> None:
    resolved = resolve_url(db)
    store = Store(make_engine(resolved.url))
    try:
        before, after = upgrade(store, revision)
    finally:
        store.dispose()
    where = store.display_url
    if before == after:
        console.print(f"{where}: schema is up to date (revision {after}).")
    elif before is None:
        console.print(f"{where}: created the jobdb schema (revision {after}).")
    else:
        console.print(f"{where}: upgraded the schema from revision {before} to {after}.")


@app.command()
def init(db: DbOption = None) -> None:
    """Create the database (or upgrade it to this jobdb's schema).

    Safe to run twice. A SQLite file is created if missing; a PostgreSQL
    database must exist (createdb NAME) and is given jobdb's tables.
    """
    _upgrade(db)


@db_app.command("upgrade")
def db_upgrade(
    db: DbOption = None,
    revision: str = typer.Option(
        "head", help=f"Target revision (default: the newest, {schema.HEAD})."
    ),
) -> None:
    """Upgrade the database schema to this jobdb's version (Alembic migrations)."""
    _upgrade(db, revision)
