"""``jobdb dispatch --executor slurm``: the command's options in, its summary out.

Kept apart from :mod:`jobdb.cli.run` so that the Slurm executor is only
imported when it is asked for, and the local dispatcher's module stays short.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import typer

from jobdb.cli import render
from jobdb.procs import HOST
from jobdb.runtime import service
from jobdb.runtime.service import Scope
from jobdb.slurm import dispatch as slurm_dispatch
from jobdb.slurm.commands import Slurm
from jobdb.slurm.dispatch import Progress
from jobdb.slurm.options import Overrides
from jobdb.slurm.submit import Submitter, launcher
from jobdb.store import Store

#: Job states that make ``dispatch --watch`` exit 1.
BAD_STATES = ("failed", "crashed", "cancelled", "blocked")


@dataclass(frozen=True)
class SlurmRequest:
    """What the command line asked of a Slurm dispatch."""

    overrides: Overrides
    watch: bool
    runs_dir: str | None
    heartbeat_interval: float
    heartbeat_timeout: float
    dependencies: bool
    quiet: bool
    json_: bool


def dispatch_slurm(store: Store, db_url: str, scope: Scope, request: SlurmRequest) -> None:
    """Submit (and with ``--watch`` follow) the scope's jobs; print the summary; exit code."""
    runs = service.runs_dir(request.runs_dir)
    submitter = Submitter(
        store=store,
        slurm=Slurm(),
        launcher=launcher(runs, request.heartbeat_interval),
        actor=f"dispatch@{HOST}:{os.getpid()}",
        db_url=db_url,
        overrides=request.overrides,
        experiment_ids=scope.experiment_ids,
        phase_ids=scope.phase_ids,
        dependencies=request.dependencies,
    )
    began = time.monotonic()
    if request.watch:
        progress = slurm_dispatch.dispatch_watch(
            submitter,
            heartbeat_timeout=request.heartbeat_timeout,
            report=None if request.quiet or request.json_ else _say,
        )
    else:
        progress = slurm_dispatch.dispatch_once(submitter)
    seconds = time.monotonic() - began
    if request.json_:
        _print_json(progress, dict(submitter.slurm.calls), seconds)
    else:
        _print_summary(progress, seconds, request.watch)
    if progress.interrupted:
        render.console.print("Interrupted: submitted jobs keep running in Slurm.")
        raise typer.Exit(130)
    if request.watch and any(progress.states.get(s) for s in BAD_STATES):
        raise typer.Exit(1)


def _print_json(progress: Progress, calls: dict[str, int], seconds: float) -> None:
    render.print_json(
        {
            "submitted": progress.submitted,
            "dependents": progress.dependents,
            "slurm_jobs": progress.slurm_jobs,
            "arrays": progress.arrays,
            "recovered": progress.recovered,
            "states": progress.states,
            "slurm_calls": calls,
            "interrupted": progress.interrupted,
            "errors": progress.errors,
            "seconds": round(seconds, 3),
        }
    )


def _print_summary(progress: Progress, seconds: float, watch: bool) -> None:
    render.console.print(
        f"Submitted {progress.submitted} job(s) to Slurm as {progress.slurm_jobs} Slurm "
        f"job(s) ({progress.arrays} array(s)) in {seconds:.1f} s."
    )
    if progress.dependents:
        render.console.print(
            f"{progress.dependents} of them wait in Slurm for their parents (afterok)."
        )
    for error in progress.errors:
        render.console.print(f"Some dependents were not submitted (they stay waiting): {error}")
    if progress.recovered:
        render.console.print(
            f"{progress.recovered} job(s) left unrecorded by a dead dispatcher were "
            "given back and submitted again."
        )
    if watch:
        shown = ", ".join(f"{n} {s}" for s, n in sorted(progress.states.items()))
        render.console.print(f"Jobs in scope: {shown or 'none'}.")


def _say(message: str) -> None:
    render.console.print(message, markup=False, highlight=False)
