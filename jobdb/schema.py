"""Schema revisions this jobdb knows, without importing Alembic.

Every command checks the database's revision against :data:`HEAD` before
doing anything; importing Alembic for that would slow every command down, so
the list of revisions is kept here and a test checks it against the
migration scripts in ``migrations/versions``.
"""

from __future__ import annotations

#: jobdb's own Alembic version table (not ``alembic_version``, which a user's
#: application sharing the database may already use).
VERSION_TABLE = "jobdb_alembic_version"

#: Every revision, oldest first.
REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004")

HEAD = REVISIONS[-1]
