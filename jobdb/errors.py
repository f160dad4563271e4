"""One exception hierarchy for everything jobdb reports to a user.

The CLI catches :class:`JobDBError` once (``jobdb.cli.main``) and prints its
message on one screen; ``exit_code`` is 2 for bad input and 1 for a runtime
failure. A docstring is the default message, so a bare ``raise NotFound()``
still says something useful.
"""

from __future__ import annotations


class JobDBError(Exception):
    """jobdb failed."""

    exit_code = 1

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.hint = hint


class BadInput(JobDBError):
    """The input is not what jobdb expected."""

    exit_code = 2


class NotFound(BadInput):
    """No such object in the database."""


class ConfigError(BadInput):
    """The jobdb configuration is invalid."""


class SchemaOutOfDate(JobDBError):
    """The database schema is older than this jobdb."""


class SchemaTooNew(JobDBError):
    """The database schema is newer than this jobdb: upgrade jobdb."""


class LostRace(JobDBError):
    """Another process changed the job(s) first; nothing was changed here."""

    def __init__(self, message: str, *, lost: dict[int, str | None]) -> None:
        super().__init__(message)
        #: job id → its current state (None when the job does not exist).
        self.lost = lost


class MissingDependency(JobDBError):
    """An optional dependency is not installed."""
