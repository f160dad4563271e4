"""docs/quickstart.md, pasted: every ``bash`` block runs verbatim, in order, in a fresh folder.

The folder gets a copy of ``examples/`` and a ``.venv`` that is a link to the
environment running the tests (where jobdb is installed), so the page's
``.venv/bin/jobdb`` and ``source .venv/bin/activate`` work as written. The
first block is the README's install-and-run command: its install steps are
what CI already did, so the commands after ``pip install .`` run. Blocks
after the one that activates the environment get its ``bin`` on PATH, as a
terminal would. ``<!-- quickstart-test: exit N -->`` before a block says it
exits with N; every other block must exit 0.

Shell completion (which the page documents but cannot run: it edits the
shell's startup file) is checked here too, in a throwaway HOME.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.acceptance.test_docs import FIRST_COMMAND

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "docs" / "quickstart.md"
BLOCK = re.compile(
    r"(?:<!-- quickstart-test: exit (?P<exit>\d+) -->\n)?^```bash\n(?P<body>.*?)^```", re.S | re.M
)
ACTIVATE = "source .venv/bin/activate"


@dataclass(frozen=True)
class Block:
    line: int
    body: str
    exit_code: int


def bash_blocks(markdown: str) -> list[Block]:
    return [
        Block(markdown.count("\n", 0, m.start("body")), m["body"], int(m["exit"] or 0))
        for m in BLOCK.finditer(markdown)
    ]


def venv() -> Path:
    """The environment running the tests; jobdb's console script must be installed there."""
    prefix = Path(sys.prefix)
    if not (prefix / "bin" / "jobdb").exists():
        pytest.fail(f"no jobdb console script in {prefix}/bin: pip install -e . first")
    return prefix


def shell_env(home: Path, path_first: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JOBDB_URL", "VIRTUAL_ENV")}
    env.update(HOME=str(home), COLUMNS="120")
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    return env


def run_block(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_quickstart_runs_verbatim(tmp_path: Path) -> None:
    blocks = bash_blocks(QUICKSTART.read_text())
    assert blocks[0].body.strip() == FIRST_COMMAND, "block 1 must be the README's command"
    assert sum(ACTIVATE in b.body for b in blocks) == 1
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    (tmp_path / ".venv").symlink_to(venv(), target_is_directory=True)
    home = tmp_path / "home"
    home.mkdir()

    installed = " && ".join(FIRST_COMMAND.split(" && ")[2:])
    scripts = [installed, *(b.body for b in blocks[1:])]
    activated = False
    for block, script in zip(blocks, scripts, strict=True):
        env = shell_env(home, tmp_path / ".venv" / "bin" if activated else None)
        proc = run_block(script, tmp_path, env)
        assert proc.returncode == block.exit_code, (
            f"docs/quickstart.md:{block.line}: exit {proc.returncode}, "
            f"expected {block.exit_code}\n$ {script}\n{proc.stdout}\n{proc.stderr}"
        )
        activated = activated or ACTIVATE in script

    check_what_the_page_promises(tmp_path)


def check_what_the_page_promises(folder: Path) -> None:
    jobdb = [str(folder / ".venv" / "bin" / "jobdb")]
    env = shell_env(folder / "home", None)

    def status(*args: str) -> dict[tuple[str, str], dict[str, int]]:
        out = subprocess.run(
            [*jobdb, "status", "--json", *args], cwd=folder, env=env, capture_output=True, text=True
        )
        return {(r["experiment"], r["phase"]): r["counts"] for r in json.loads(out.stdout)}

    assert status() == {
        ("quickstart", "cv"): {"done": 18},
        ("quickstart", "retrain"): {"done": 1},
        ("quickstart", "test"): {"done": 1},
        ("first", "train"): {"done": 6},
        ("first", "final"): {"done": 1},
        ("flaky", "main"): {"done": 1, "ready": 1},
    }
    assert status("--db", "sqlite:///archive.sqlite") == {
        ("quickstart", phase): {"done": n} for phase, n in (("cv", 18), ("retrain", 1), ("test", 1))
    }
    assert (folder / "backup.sqlite").is_file()
    assert (folder / "cv.csv").read_text().count("\n") == 19  # a header and 18 jobs


def test_shell_completion_installs_and_completes(tmp_path: Path) -> None:
    """--show-completion / --install-completion (Typer's) and the completion protocol itself."""
    jobdb = str(venv() / "bin" / "jobdb")
    env = shell_env(tmp_path, None) | {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}

    def run(*args: str, **extra: str) -> str:
        proc = subprocess.run(
            [jobdb, *args], env=env | extra, capture_output=True, text=True, check=True
        )
        return proc.stdout

    assert "_JOBDB_COMPLETE=complete_bash" in run("--show-completion", "bash")
    run("--install-completion", "bash")
    assert "jobdb.sh" in (tmp_path / ".bashrc").read_text()
    assert (tmp_path / ".bash_completions" / "jobdb.sh").is_file()
    words = {"_JOBDB_COMPLETE": "complete_bash", "COMP_WORDS": "jobdb db c", "COMP_CWORD": "2"}
    assert run(**words).split() == ["copy"]
    words |= {"COMP_WORDS": "jobdb im", "COMP_CWORD": "1"}
    assert run(**words).split() == ["import"]


def test_every_command_in_the_help_exists() -> None:
    """The examples in ``jobdb --help`` name real commands."""
    from typer.main import get_command

    from jobdb.cli import app
    from jobdb.cli.app import HELP

    group = get_command(app)
    named = set(re.findall(r"jobdb (\w+)", HELP))
    assert named <= set(group.commands), named - set(group.commands)  # type: ignore[attr-defined]
    for command in ("results", "best", "plot", "report", "export", "import", "smoke", "monitor"):
        assert f"jobdb {command}" in HELP
    assert "jobdb db copy" in HELP
