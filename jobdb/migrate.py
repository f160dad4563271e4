"""Running the Alembic migrations shipped with jobdb.

In a wheel the migrations sit inside the package (``jobdb/migrations``); in a
source checkout they are the top-level ``migrations/`` folder. Both are found
here, so ``jobdb init`` works from any directory.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from jobdb import schema


def migrations_dir() -> Path:
    """The folder holding ``env.py`` and ``versions/``."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("jobdb's migrations folder is missing from this installation")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration that runs on ``connection`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = schema.VERSION_TABLE
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database behind ``connection`` inside its open transaction."""
    command.upgrade(alembic_config(connection), revision)


def script_revisions() -> list[str]:
    """The revisions of the migration scripts, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]
