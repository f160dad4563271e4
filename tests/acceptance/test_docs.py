"""The docs say what the code does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_cli_reference_is_current() -> None:
    """docs/cli.md is what scripts/gen-cli-docs generates from the Typer app today."""
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "typer",
            "jobdb.cli",
            "utils",
            "docs",
            "--name",
            "jobdb",
            "--title",
            "CLI reference",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout
    committed = (REPO / "docs" / "cli.md").read_text()
    assert committed.split("\n", 2)[2].strip() == generated.strip(), (
        "docs/cli.md is stale: run scripts/gen-cli-docs"
    )


def test_readme_commands_exist() -> None:
    readme = (REPO / "README.md").read_text()
    assert ".venv/bin/jobdb init && .venv/bin/jobdb status" in readme
    assert "./scripts/test" in readme
    assert (REPO / "scripts" / "test").stat().st_mode & 0o111
    ci = (REPO / ".ci" / "run").read_text()
    assert "./scripts/test" in ci
