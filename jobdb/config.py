"""Where the database is: ``--db URL``, else ``JOBDB_URL``, else ``jobdb.toml``, else SQLite.

``jobdb.toml`` is looked for in the working directory and then in each
parent, so a project folder can pin its database for every command run
inside it::

    # jobdb.toml
    url = "postgresql+psycopg://me@dbhost/jobdb"
    # or: url = "sqlite:///runs/jobdb.sqlite"  (relative to this file)

A URL is never printed with its password: use :func:`display_url`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from jobdb.errors import ConfigError

ENV_VAR = "JOBDB_URL"
CONFIG_FILE = "jobdb.toml"
DEFAULT_SQLITE_FILE = "jobdb.sqlite"


@dataclass(frozen=True)
class ResolvedURL:
    """A database URL and where it came from (shown by ``jobdb status``)."""

    url: URL
    source: str


def resolve_url(cli_url: str | None = None, cwd: Path | None = None) -> ResolvedURL:
    """Apply the lookup order of the module docstring."""
    cwd = cwd or Path.cwd()
    if cli_url:
        return ResolvedURL(parse_url(cli_url, "--db"), "--db")
    env = os.environ.get(ENV_VAR)
    if env:
        return ResolvedURL(parse_url(env, ENV_VAR), ENV_VAR)
    config = find_config(cwd)
    if config is not None:
        return ResolvedURL(url_from_config(config), str(config))
    return ResolvedURL(sqlite_url(cwd / DEFAULT_SQLITE_FILE), "default")


def find_config(start: Path) -> Path | None:
    """The nearest ``jobdb.toml`` in ``start`` or one of its parents."""
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def url_from_config(path: Path) -> URL:
    """Read ``url`` from a ``jobdb.toml``; a relative SQLite path is relative to the file."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it as TOML: {exc}") from None
    raw = data.get("url")
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f'{path}: expected a key url = "<database URL>"')
    url = parse_url(raw, str(path))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db_path = Path(url.database)
        if not db_path.is_absolute():
            url = url.set(database=str(path.parent / db_path))
    return url


def parse_url(raw: str, where: str) -> URL:
    """Parse and check a database URL; ``where`` names its origin in errors."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{where}: not a database URL: {_redact(raw)!r}",
            hint="expected e.g. sqlite:///jobdb.sqlite or postgresql+psycopg://user@host/db",
        ) from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"{where}: unsupported database {backend!r} (use sqlite or postgresql)")
    if backend == "postgresql" and url.drivername == "postgresql":
        # Plain postgresql:// would mean psycopg2; jobdb's extra installs psycopg 3.
        url = url.set(drivername="postgresql+psycopg")
    return url


def sqlite_url(path: Path) -> URL:
    """A SQLite URL for a file path."""
    return URL.create("sqlite", database=str(path))


def display_url(url: URL | str) -> str:
    """The URL as text with its password hidden."""
    if isinstance(url, str):
        return _redact(url)
    return url.render_as_string(hide_password=True)


def _redact(raw: str) -> str:
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Not parseable: hide whatever sits between "user:" and "@".
        head, sep, tail = raw.rpartition("://")
        credentials, at, rest = tail.partition("@")
        if at and ":" in credentials:
            user = credentials.split(":", 1)[0]
            return f"{head}{sep}{user}:***@{rest}"
        return raw
