"""Alembic environment for jobdb.

jobdb runs migrations itself (``jobdb init``, ``jobdb db upgrade``) and hands
this environment an open connection. For developers writing a new revision,
``alembic -c migrations/alembic.ini revision --autogenerate -m "..."`` uses
the database jobdb would use (``JOBDB_URL`` or the default SQLite file).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from jobdb import schema
from jobdb.models import metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=schema.VERSION_TABLE,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    from jobdb.config import resolve_url
    from jobdb.store import make_engine

    engine = make_engine(resolve_url().url)
    with engine.begin() as conn:
        run(conn)


main()
