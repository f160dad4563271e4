"""The docs say what the code does."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tests.acceptance.cli import jobdb

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


FIRST_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install . && "
    ".venv/bin/jobdb schedule examples/quickstart.yaml && "
    ".venv/bin/jobdb dispatch --watch && .venv/bin/jobdb status"
)


def test_readme_first_command_runs_the_example_end_to_end(tmp_path: Path) -> None:
    """The README's first command after the install, in a fresh folder: 20 jobs done."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    for part in FIRST_COMMAND.split(" && ")[2:]:
        args = shlex.split(part)[1:]
        jobdb(*args, cwd=tmp_path)
    status = jobdb("status", "--json", cwd=tmp_path).stdout
    counts = {row["phase"]: row["counts"] for row in json.loads(status)}
    assert counts == {"cv": {"done": 18}, "retrain": {"done": 1}, "test": {"done": 1}}


def test_readme_commands_exist() -> None:
    readme = (REPO / "README.md").read_text()
    assert FIRST_COMMAND in readme
    assert "./scripts/test" in readme
    assert (REPO / "scripts" / "test").stat().st_mode & 0o111
    ci = (REPO / ".ci" / "run").read_text()
    assert "./scripts/test" in ci
