"""The one place where errors become messages and exit codes.

Exit code 2: bad input (usage errors, unknown ids, bad URLs or specs).
Exit code 1: runtime failures (database unreachable, lost race, ...).
Typer itself prints usage errors (exit 2) and handles Ctrl-C (exit 130);
jobdb's own errors and database errors are caught here and printed on one
screen, without a traceback and never with the locals of a frame: a
database URL may carry a password.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.text import Text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from jobdb.cli.render import err_console
from jobdb.errors import JobDBError


def run(args: Sequence[str] | None = None) -> int:
    """Run the CLI on ``args`` (default: ``sys.argv``) and return its exit code."""
    from jobdb.cli import app

    try:
        app(args=None if args is None else list(args))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except JobDBError as exc:
        _print_error(str(exc), exc.hint)
        return exc.exit_code
    except DBAPIError as exc:
        _print_error(f"database error: {_first_line(exc.orig)}", None)
        return 1
    except SQLAlchemyError as exc:
        _print_error(f"database error: {_first_line(exc)}", None)
        return 1
    return 0


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _print_error(message: str, hint: str | None) -> None:
    # Text(): a message is data, never Rich markup ("[a]" in a path must survive).
    err_console.print("[bold red]error:[/]", Text(message), highlight=False)
    if hint:
        err_console.print("[bold]hint:[/]", Text(hint), highlight=False)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
