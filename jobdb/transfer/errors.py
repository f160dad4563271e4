"""What a copy, an export or an import can refuse (all bad input: exit code 2)."""

from __future__ import annotations

from jobdb.errors import BadInput, JobDBError


class DestinationNotEmpty(BadInput):
    """The destination database already holds jobdb data."""


class SameDatabase(BadInput):
    """The source and the destination are the same database."""


class CountMismatch(JobDBError):
    """The destination does not hold as many rows as the source after the copy."""


class BadExportFile(BadInput):
    """The file is not a jobdb experiment export."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}", hint="nothing was imported")
        self.line = line


class ExperimentExists(BadInput):
    """An experiment of that name is already in the database."""
