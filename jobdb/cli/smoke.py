"""``jobdb smoke``: run the first job of every phase inline before dispatching."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from jobdb.cli import render
from jobdb.cli.app import app
from jobdb.cli.common import DbOption, JsonOption, PhaseOption, open_store
from jobdb.runtime import service
from jobdb.runtime.smoke import SmokeRun, first_jobs, run_smoke
from jobdb.selectors import _split_commas

_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow"}


@app.command()
def smoke(
    experiment: Annotated[str, typer.Argument(metavar="EXPERIMENT", help="Experiment name.")],
    phase: PhaseOption = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", metavar="SECONDS", help="Budget per phase; over it is failed."),
    ] = 600.0,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the scratch folder (logs) even when all pass.")
    ] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Run the first job of every phase here, on CPU, one batch, before dispatching.

    Each phase's first job runs as a child process exactly as it would under
    `jobdb dispatch`, but with ctx.smoke true ($JOBDB_SMOKE=1 for commands),
    no GPU, and a scratch folder. Downstream phases get the upstream smoke
    results as their parents' results. The database is only read: job states
    do not change. Exit status: 0 when every phase passed, 1 otherwise (the
    scratch folder with the logs is kept and named).

    Examples:

      jobdb smoke kws                        every phase of experiment kws
      jobdb smoke kws -p train --timeout 60  one phase, one minute
    """
    store = open_store(db)
    phases = _split_commas(phase or [])
    with store.read() as conn:
        scope = service.resolve_scope(conn, [experiment], phases)  # unknown names are errors
        jobs = first_jobs(conn, (scope.experiment_ids or [0])[0], phases)
    scratch = Path(tempfile.mkdtemp(prefix="jobdb-smoke-"))
    with store.read() as conn:
        runs = run_smoke(conn, jobs, scratch, timeout, on_start=_starting(as_json))
    failed = any(not run.ok for run in runs)
    if as_json:
        render.print_json([_as_dict(run) for run in runs])
    else:
        render.console.print(_table(runs))
    if not (failed or keep):
        shutil.rmtree(scratch, ignore_errors=True)
    elif not as_json:  # the JSON rows name each log folder
        render.console.print(f"Logs kept in {scratch}", markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)


def _starting(quiet: bool) -> Callable[[str, int], None]:
    def say(phase: str, job_id: int) -> None:
        if not quiet:
            render.console.print(f"smoke: phase {phase}, job {job_id} …", style="dim")

    return say


def _table(runs: list[SmokeRun]) -> Table:
    table = Table(title="Smoke run: first job of each phase, CPU, one batch")
    for column in ("phase", "job", "smoke", "seconds", "detail"):
        table.add_column(column, overflow="fold")
    for run in runs:
        table.add_row(
            run.phase,
            str(run.job_id),
            Text(run.status, style=_STYLE[run.status]),
            f"{run.seconds:.1f}" if run.status != "skipped" else "",
            Text(_detail(run)),
        )
    return table


def _detail(run: SmokeRun) -> str:
    if run.ok:
        return render.compact(run.result)
    # The reason, then the end of stderr (a traceback's last line names the exception).
    lines = (run.detail or "").splitlines()
    return "\n".join(lines[:1] + lines[1:][-3:])


def _as_dict(run: SmokeRun) -> dict[str, object]:
    return {
        "phase": run.phase,
        "job": run.job_id,
        "status": run.status,
        "seconds": round(run.seconds, 3),
        "detail": run.detail,
        "result": run.result,
        "log_dir": str(run.log_dir) if run.log_dir else None,
    }
