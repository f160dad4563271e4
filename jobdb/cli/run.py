"""``jobdb run``, ``jobdb dispatch``, ``jobdb worker``: running jobs."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Annotated

import typer
from rich.table import Table

from jobdb.cli import render
from jobdb.cli.app import app
from jobdb.cli.common import DbOption, ExperimentOption, JsonOption, PhaseOption, open_store
from jobdb.config import resolve_url
from jobdb.errors import BadInput
from jobdb.monitor import DEFAULT_HEARTBEAT_TIMEOUT
from jobdb.procs import HOST
from jobdb.runtime import service
from jobdb.runtime.engine import Options, Tally, Verdict
from jobdb.runtime.service import Scope
from jobdb.selectors import _split_commas
from jobdb.states import State
from jobdb.store import Store

RunsDirOption = Annotated[
    str | None,
    typer.Option(
        "--runs-dir",
        metavar="DIR",
        help="Where job folders and logs go (default: $JOBDB_RUNS_DIR, else ./jobdb-runs).",
        show_default=False,
    ),
]
HeartbeatOption = Annotated[
    float,
    typer.Option(
        "--heartbeat-interval",
        metavar="SECONDS",
        min=0.05,
        help="Seconds between heartbeats of running jobs.",
    ),
]
GpusOption = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        metavar="LIST",
        help="GPU devices to use, e.g. 0,1,3 or none (default: detected with NVML/nvidia-smi).",
        show_default=False,
    ),
]
SlotsOption = Annotated[
    int | None,
    typer.Option(
        "--slots",
        metavar="N",
        help="Jobs without GPUs run at most N at a time (default: the number of cores).",
        show_default=False,
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the summary.")]


def _actor(command: str) -> str:
    return f"{command}@{HOST}:{os.getpid()}"


@app.command()
def run(
    job_id: Annotated[int, typer.Argument(metavar="JOB", help="The job to run.")],
    attempt: Annotated[
        int | None,
        typer.Option(
            "--attempt",
            metavar="N",
            help="The attempt a dispatcher claimed for this run; refused if the job moved on.",
        ),
    ] = None,
    db: DbOption = None,
    runs_dir: RunsDirOption = None,
    heartbeat_interval: HeartbeatOption = 10.0,
    gpus: GpusOption = None,
) -> None:
    """Run one job here and record how it ended (what every executor launches).

    The job must be ready (it is claimed here) or queued for this run; a job
    already running or finished is refused, so it can never run twice.
    Exit status: 0 when the job ended done, 1 otherwise.

    Example: jobdb run 42
    """
    store = open_store(db)
    slots = service.make_slots(_given_or_allocated(gpus), 1, default_slots=1)
    options = Options(
        actor=_actor("run"),
        runs_dir=service.runs_dir(runs_dir),
        heartbeat_interval=heartbeat_interval,
        job_ids=[job_id],
        expect_attempt=attempt,
        interrupt_reason=_slurm_interrupt_reason(),
    )
    engine = service.run_engine(store, slots, options, report=_say, adopt=job_id)
    tally = engine.tally
    for line in tally.lost:
        _say(line)
    verdict = tally.verdicts[-1] if tally.verdicts else None
    if verdict is None or verdict.outcome.verdict != State.DONE:
        raise typer.Exit(1)


@app.command()
def dispatch(
    executor: Annotated[
        str,
        typer.Option("--executor", "-x", metavar="NAME", help="Where jobs run: local or slurm."),
    ] = "local",
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Keep going until nothing in scope is ready, queued or running, then summarise.",
        ),
    ] = False,
    stop_running: Annotated[
        bool,
        typer.Option(
            "--stop-running", help="On Ctrl-C, terminate running jobs instead of waiting for them."
        ),
    ] = False,
    experiment: ExperimentOption = None,
    phase: PhaseOption = None,
    slots: SlotsOption = None,
    gpus: GpusOption = None,
    db: DbOption = None,
    runs_dir: RunsDirOption = None,
    heartbeat_interval: HeartbeatOption = 10.0,
    quiet: QuietOption = False,
    json_: JsonOption = False,
    array: Annotated[
        bool | None,
        typer.Option(
            "--array/--single",
            help="Slurm: one job array per phase whose tasks pull the jobs (pull mode), or one "
            "Slurm job per job (default: the spec's settings.sbatch_mode, else single).",
            show_default=False,
        ),
    ] = None,
    max_running: Annotated[
        int | None,
        typer.Option(
            "--max-running",
            metavar="N",
            min=1,
            help="Slurm arrays: at most N tasks of one array run at once (%N).",
            show_default=False,
        ),
    ] = None,
    partition: Annotated[
        str | None,
        typer.Option(
            "--partition",
            metavar="NAME",
            help="Slurm partition (overrides the spec).",
            show_default=False,
        ),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            metavar="NAME",
            help="Slurm account (overrides the spec).",
            show_default=False,
        ),
    ] = None,
    qos: Annotated[
        str | None,
        typer.Option(
            "--qos", metavar="NAME", help="Slurm QOS (overrides the spec).", show_default=False
        ),
    ] = None,
    sbatch: Annotated[
        list[str] | None,
        typer.Option(
            "--sbatch",
            metavar="OPTION",
            help="Slurm: one more #SBATCH option, e.g. --sbatch=--exclusive (repeatable).",
            show_default=False,
        ),
    ] = None,
    heartbeat_timeout: Annotated[
        float | None,
        typer.Option(
            "--heartbeat-timeout",
            metavar="SECONDS",
            min=1.0,
            help="Slurm with --watch: a running job whose last heartbeat is older than this "
            f"is crashed, as jobdb monitor does (default: {DEFAULT_HEARTBEAT_TIMEOUT:g}).",
            show_default=False,
        ),
    ] = None,
    slurm_dependencies: Annotated[
        bool,
        typer.Option(
            "--slurm-dependencies",
            help="Slurm: also submit waiting jobs whose parents are queued or running in Slurm, "
            "with --dependency=afterok on the parents' Slurm jobs, so a whole chain is "
            "submitted at once (no --watch needed).",
        ),
    ] = False,
) -> None:
    """Send ready jobs to an executor.

    With --executor local, jobs run on this machine: a job asking for N GPUs
    gets N free devices (CUDA_VISIBLE_DEVICES), others take a CPU slot.
    Without --watch, what fits now is started (one detached `jobdb run` per
    job) and the command returns; with --watch this process supervises the
    jobs itself, starts dependents as they become ready, and ends with a
    summary. Killing the dispatcher loses nothing: run it again (jobs it
    left are recovered and retried).

    With --executor slurm, each job becomes a Slurm job running `jobdb run`
    (or, with --array, each phase one job array whose tasks run `jobdb
    worker` and pull the jobs), with the phase's resources as sbatch options.
    Without --watch the jobs are submitted and the command returns; with
    --watch it also watches Slurm and heartbeats (the monitor's work),
    submits dependents as they become ready, and ends with a summary. With
    --slurm-dependencies the dependents are submitted at once, each waiting
    in Slurm for its parents (afterok): one call submits a whole pipeline.

    Examples:

      jobdb dispatch --watch                     run everything, 1 job per core
      jobdb dispatch --watch --gpus 0,1 -e sweep two GPUs, one experiment
      jobdb dispatch -x slurm --array --max-running 20 --watch
      jobdb dispatch -x slurm --slurm-dependencies   submit all phases, then leave
    """
    slurm_only = {
        "--array/--single": array is not None, "--max-running": max_running is not None,
        "--partition": partition is not None, "--account": account is not None,
        "--qos": qos is not None, "--sbatch": bool(sbatch),
        "--heartbeat-timeout": heartbeat_timeout is not None,
        "--slurm-dependencies": slurm_dependencies,
    }  # fmt: skip
    if executor == "slurm":
        from jobdb.cli.slurm import SlurmRequest, dispatch_slurm
        from jobdb.slurm.options import Overrides

        overrides = Overrides(array, partition, account, qos, max_running, tuple(sbatch or ()))
        request = SlurmRequest(
            overrides=overrides,
            watch=watch,
            runs_dir=runs_dir,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout or DEFAULT_HEARTBEAT_TIMEOUT,
            dependencies=slurm_dependencies,
            quiet=quiet,
            json_=json_,
        )
        store = open_store(db)
        url = resolve_url(db).url.render_as_string(hide_password=False)
        dispatch_slurm(store, url, _scope(store, experiment, phase), request)
        return
    if executor != "local":
        raise BadInput(f"--executor {executor!r}: unknown executor", hint="local or slurm")
    given = [name for name, set_ in slurm_only.items() if set_]
    if given:
        raise BadInput(f"{given[0]} is an option of --executor slurm")
    store = open_store(db)
    scope = _scope(store, experiment, phase)
    pool = service.make_slots(gpus, slots, default_slots=os.cpu_count() or 1)
    options = Options(
        actor=_actor("dispatch"),
        runs_dir=service.runs_dir(runs_dir),
        heartbeat_interval=heartbeat_interval,
        experiment_ids=scope.experiment_ids,
        phase_ids=scope.phase_ids,
        until="drained",
        stop_running_on_interrupt=stop_running,
        # Without --watch, dispatch_detached counts every job on this host itself.
        share_host_gpus=watch,
    )
    if not watch:
        url = resolve_url(db).url.render_as_string(hide_password=False)
        handed = service.dispatch_detached(store, pool, options, url, options.runs_dir)
        if json_:
            render.print_json([h.__dict__ for h in handed])
        else:
            render.console.print(f"Started {len(handed)} job(s) on {HOST}.")
        return
    began = time.monotonic()
    engine = service.run_engine(
        store, pool, options, report=_say, on_verdict=None if quiet else _print_verdict
    )
    _summarise(engine.tally, time.monotonic() - began, json_)
    _exit_if_interrupted(engine.tally)
    if engine.tally.unfit:
        raise typer.Exit(1)
    if any(v.outcome.verdict != State.DONE and not v.retried for v in engine.tally.verdicts):
        raise typer.Exit(1)


@app.command()
def worker(
    experiment: ExperimentOption = None,
    phase: PhaseOption = None,
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", metavar="N", help="Stop after starting N jobs.")
    ] = None,
    max_time: Annotated[
        float | None,
        typer.Option(
            "--max-time", metavar="SECONDS", help="Start no job after SECONDS (running ones end)."
        ),
    ] = None,
    slots: Annotated[
        int, typer.Option("--slots", metavar="N", help="Jobs without GPUs run N at a time.")
    ] = 1,
    gpus: GpusOption = None,
    db: DbOption = None,
    runs_dir: RunsDirOption = None,
    heartbeat_interval: HeartbeatOption = 10.0,
    quiet: QuietOption = False,
    json_: JsonOption = False,
    slurm_array: Annotated[
        bool,
        typer.Option(
            "--slurm-array",
            hidden=True,
            help="Inside a Slurm array task: run the queued jobs recorded on this array.",
        ),
    ] = False,
) -> None:
    """Pull jobs from the database and run them until nothing is claimable.

    The pull model: start as many workers as you like, on as many machines as
    share the database (PostgreSQL for many machines; SQLite for one). Each
    claim is atomic, so no job runs twice.

    Example: jobdb worker -e sweep --max-time 3600
    """
    store = open_store(db)
    scope = _scope(store, experiment, phase)
    pool = service.make_slots(_given_or_allocated(gpus), slots, default_slots=1)
    options = Options(
        actor=_actor("worker"),
        runs_dir=service.runs_dir(runs_dir),
        heartbeat_interval=heartbeat_interval,
        experiment_ids=scope.experiment_ids,
        phase_ids=scope.phase_ids,
        max_jobs=max_jobs,
        max_time=max_time,
        until="idle",
        interrupt_reason=_slurm_interrupt_reason(),
        share_host_gpus=not os.environ.get("SLURM_JOB_ID"),
    )
    if slurm_array:
        from jobdb.slurm import jobside

        array_id, task_id = jobside.array_job_id(), jobside.slurm_job_id()
        if array_id is None or task_id is None:
            raise BadInput("--slurm-array: not inside a Slurm job array (no $SLURM_ARRAY_JOB_ID)")
        options.submitted_as, options.external_id = array_id, task_id
    began = time.monotonic()
    engine = service.run_engine(
        store, pool, options, report=_say, on_verdict=None if quiet else _print_verdict
    )
    _summarise(engine.tally, time.monotonic() - began, json_)
    _exit_if_interrupted(engine.tally)


def _slurm_interrupt_reason() -> Callable[[str], str | None] | None:
    """Inside a Slurm job, a SIGTERM's reason comes from Slurm (cancelled, timeout)."""
    if not os.environ.get("SLURM_JOB_ID"):
        return None
    from jobdb.slurm.jobside import interrupt_reason

    return interrupt_reason


def _exit_if_interrupted(tally: Tally) -> None:
    """Exit 128 + the signal number, as a shell reports a command it interrupted."""
    if tally.interrupted is not None:
        raise typer.Exit(128 + signal.Signals[tally.interrupted].value)


def _given_or_allocated(gpus: str | None) -> str | None:
    """``--gpus``, else the devices Slurm (or a parent) allocated, else None: detect."""
    return gpus if gpus is not None else os.environ.get("CUDA_VISIBLE_DEVICES")


def _scope(store: Store, experiment: list[str] | None, phase: list[str] | None) -> Scope:
    with store.read() as conn:
        return service.resolve_scope(
            conn, _split_commas(experiment or []), _split_commas(phase or [])
        )


def _say(message: str) -> None:
    render.console.print(message, markup=False, highlight=False)


def _print_verdict(v: Verdict) -> None:
    if v.outcome.verdict == State.DONE:
        return
    then = " → retry" if v.retried else (f", {v.blocked} blocked" if v.blocked else "")
    lines = (v.outcome.error or "").strip().splitlines()
    cause = f" — {lines[-1][:160]}" if lines else ""
    render.console.print(
        render.state_text(v.outcome.verdict.value),
        f" job {v.job_id} ({v.phase}, attempt {v.attempt}): {v.outcome.reason}{then}{cause}",
        sep="",
        highlight=False,
    )


def _summarise(tally: Tally, seconds: float, as_json: bool) -> None:
    counts = {s.value: tally.count(s) for s in (State.DONE, State.FAILED, State.CRASHED)}
    retried = sum(1 for v in tally.verdicts if v.retried)
    if as_json:
        render.print_json(
            {
                "started": tally.started,
                "ended": counts,
                "retried": retried,
                "lost_races": len(tally.lost),
                "cannot_run_here": tally.unfit,
                "interrupted": tally.interrupted,
                "seconds": round(seconds, 3),
            }
        )
        return
    table = Table(title=f"Ran {tally.started} job(s) in {seconds:.1f} s", title_justify="left")
    for name in ("started", *counts, "retried"):
        table.add_column(name, justify="right")
    table.add_row(str(tally.started), *(str(n) for n in counts.values()), str(retried))
    render.console.print(table)
    if tally.unfit:
        render.console.print(
            f"{tally.unfit} ready job(s) ask for more GPUs than this machine has "
            "(--gpus); they were left ready."
        )
    if tally.interrupted:
        render.console.print(f"Stopped by {tally.interrupted}.")
