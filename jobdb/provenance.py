"""Where an experiment came from: git commit, dirty flag, branch, host, user, version.

Recorded when an experiment is scheduled, so that months later a result can
be traced to the code that produced it. Git is asked about the folder that
holds the spec; outside a work tree (or without git) those fields are None.
"""

from __future__ import annotations

import getpass
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jobdb import __version__


@dataclass(frozen=True)
class Provenance:
    git_commit: str | None
    git_dirty: bool | None
    git_branch: str | None
    host: str
    user: str
    jobdb_version: str

    def as_columns(self) -> dict[str, Any]:
        """The values of the matching ``experiments`` columns."""
        return asdict(self)


def collect(spec_path: Path | None) -> Provenance:
    """Provenance of a spec at ``spec_path`` (None: the current directory)."""
    folder = spec_path.resolve().parent if spec_path else Path.cwd()
    commit = _git(folder, "rev-parse", "HEAD")
    dirty = None
    branch = None
    if commit is not None:
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
        dirty = bool(status)
        branch = _git(folder, "rev-parse", "--abbrev-ref", "HEAD")
    return Provenance(
        git_commit=commit,
        git_dirty=dirty,
        git_branch=branch,
        host=socket.gethostname(),
        user=_user(),
        jobdb_version=__version__,
    )


def _git(folder: Path, *args: str) -> str | None:
    """Output of a git command in ``folder``, or None when it fails (no git, no repo)."""
    try:
        proc = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
