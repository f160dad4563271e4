"""``jobdb monitor`` (verdicts for lost jobs, a live dashboard) and ``jobdb logs``."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Annotated, Any, BinaryIO

import typer
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from jobdb import logs as logfiles
from jobdb import monitor as mon
from jobdb import procs
from jobdb.cli import render
from jobdb.cli.app import app
from jobdb.cli.common import DbOption, open_store
from jobdb.errors import BadInput
from jobdb.states import State
from jobdb.store import Store

#: The dashboard redraws at least this often, between passes too (elapsed times move).
REDRAW_S = 2.0

IntervalOption = Annotated[
    float,
    typer.Option(
        "--interval", min=0.1, metavar="SECONDS", help="Seconds between two monitor passes."
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--heartbeat-timeout",
        min=1.0,
        metavar="SECONDS",
        help="A running job whose last heartbeat (database clock) is older than this is "
        "crashed. Keep it several supervisor heartbeat intervals (10 s by default).",
    ),
]


@app.command()
def monitor(
    db: DbOption = None,
    once: Annotated[
        bool, typer.Option("--once", help="Do one pass, print what it flagged and exit.")
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Show a live dashboard (progress, running jobs, latest verdicts)."
        ),
    ] = False,
    interval: IntervalOption = mon.DEFAULT_INTERVAL,
    heartbeat_timeout: TimeoutOption = mon.DEFAULT_HEARTBEAT_TIMEOUT,
    json_: Annotated[
        bool,
        typer.Option("--json", help="Print verdicts as JSON (with --once: one document)."),
    ] = False,
) -> None:
    """Mark lost jobs crashed, apply their retry policy, give back unstarted ones.

    A running job whose heartbeat is older than --heartbeat-timeout is
    crashed (reason "heartbeat"). On this host, a job whose supervisor
    (jobdb run, dispatch, worker) died is crashed at once: its orphaned
    program is terminated ("supervisor lost") or already gone ("process
    vanished"); a queued one goes back to ready. A job is flagged at most
    the heartbeat timeout plus one interval after it was lost.

    Slurm jobs (dispatch -x slurm): each pass also asks Slurm about all
    queued and running ones at once (squeue; sacct for finished ones). A job
    Slurm ended without a verdict is crashed with Slurm's reason (timeout,
    oom, node failure, cancelled outside jobdb, lost); a held one whose
    dispatcher died is released or cancelled; one waiting behind a parent
    that did not end well (--slurm-dependencies) goes back to waiting or
    blocked. A stale heartbeat also cancels the job's Slurm job, which a
    hung node may still show RUNNING.

    Without --once it runs until Ctrl-C, printing each verdict.

    Examples:

      jobdb monitor --once

      jobdb monitor --watch --interval 5
    """
    if once and watch:
        raise BadInput("--once and --watch exclude each other: pick one")
    if watch and json_:
        raise BadInput("--json prints verdicts, not a dashboard: drop --watch or --json")
    store = open_store(db)
    judge = _judge(store, heartbeat_timeout)
    if once:
        _print_pass(judge(), json_)
    elif watch:
        with _Stop() as stop:
            _watch(store, judge, stop, interval, heartbeat_timeout)
    else:
        with _Stop() as stop:
            _loop(store, judge, stop, interval, heartbeat_timeout, json_)


def _judge(store: Store, timeout: float) -> Callable[[], mon.Pass]:
    actor = f"monitor:{_user()}@{procs.HOST}:{os.getpid()}"
    return lambda: mon.run_pass(store, heartbeat_timeout=timeout, actor=actor)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class _Stop:
    """Ctrl-C or SIGTERM: stop after the pass under way (exit 0); a second Ctrl-C: at once.

    A pass is not cut short because it may sit between writing a verdict and
    reporting it, or between signalling an orphaned program and recording it.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._request)
        return self

    def __exit__(self, *exc: object) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        interrupted = isinstance(exc[1], KeyboardInterrupt)
        if interrupted or (self.requested and exc[1] is None):
            render.err_console.print("monitor stopped")
        return interrupted

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early when a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))


def _print_pass(found: mon.Pass, json_: bool) -> None:
    if json_:
        render.print_json(
            {
                "verdicts": [v.to_json() for v in found.verdicts],
                "skipped": [s.to_json() for s in found.skipped],
            }
        )
        return
    if found.verdicts:
        render.console.print(verdicts_table(found.verdicts))
    else:
        render.console.print(
            f"nothing to flag (no stale heartbeat, no dead supervisor on {procs.HOST})"
        )
    for skipped in found.skipped:
        render.console.print(Text(_skipped_line(skipped)))


def _loop(
    store: Store,
    judge: Callable[[], mon.Pass],
    stop: _Stop,
    interval: float,
    timeout: float,
    json_: bool,
) -> None:
    """Pass after pass, one line per verdict: for a terminal, a log file or a pipe (``--json``)."""
    render.err_console.print(
        f"monitoring {store.display_url} every {interval:g} s "
        f"(heartbeat timeout {timeout:g} s); Ctrl-C stops"
    )
    while not stop.requested:
        found = judge()
        for verdict in found.verdicts:
            _emit(verdict.to_json() if json_ else f"{_clock()} {describe(verdict)}", json_)
        for skipped in found.skipped:
            _emit(skipped.to_json() if json_ else f"{_clock()} {_skipped_line(skipped)}", json_)
        stop.sleep(interval)


def _emit(item: Any, json_: bool) -> None:
    if json_:
        print(json.dumps(item), flush=True)
    else:
        render.console.print(Text(item))


def _clock() -> str:
    return dt.datetime.now().astimezone().strftime("%H:%M:%S")


def describe(verdict: mon.Verdict) -> str:
    """One line for a verdict, e.g. ``job 7 attempt 1: crashed (heartbeat), retried``."""
    head = f"job {verdict.job_id} attempt {verdict.attempt}"
    if verdict.state == State.READY:
        return f"{head}: given back to ready ({verdict.reason} before the program started)"
    line = f"{head}: {verdict.state} ({verdict.reason})"
    if verdict.retried:
        return f"{line}, ready for another attempt"
    if verdict.blocked:
        return f"{line}, for good; blocked {len(verdict.blocked)} descendant(s)"
    return f"{line}, for good"


def _skipped_line(skipped: mon.Skipped) -> str:
    return (
        f"job {skipped.job_id} attempt {skipped.attempt}: not marked ({skipped.reason}), "
        f"it changed first and is now {skipped.now}"
    )


def verdicts_table(verdicts: list[mon.Verdict]) -> Table:
    table = Table(title="Verdicts", title_justify="left")
    for name in ("job", "attempt", "verdict", "reason", "then"):
        table.add_column(name)
    for v in verdicts:
        then = "retry" if v.retried else ("released" if v.state == State.READY else "for good")
        if v.blocked:
            then += f", blocked {', '.join(map(str, v.blocked))}"
        table.add_row(str(v.job_id), str(v.attempt), render.state_text(v.state), v.reason, then)
    return table


# --------------------------------------------------------------------------
# the live dashboard


def _watch(
    store: Store, judge: Callable[[], mon.Pass], stop: _Stop, interval: float, timeout: float
) -> None:
    """Passes every ``interval``; the picture redrawn in between as well."""
    session: deque[mon.Verdict] = deque(maxlen=8)
    passes, next_pass = 0, 0.0
    with Live(Text("starting…"), console=render.console, auto_refresh=False) as live:
        while not stop.requested:
            if time.monotonic() >= next_pass:
                session.extend(judge().verdicts)
                passes, next_pass = passes + 1, time.monotonic() + interval
            title = (
                f"{store.display_url}  pass {passes} (every {interval:g} s, "
                f"heartbeat timeout {timeout:g} s)  Ctrl-C stops"
            )
            live.update(dashboard(mon.snapshot(store), title, list(session)), refresh=True)
            stop.sleep(min(REDRAW_S, next_pass - time.monotonic()))
    if not render.console.is_terminal:
        render.console.line()  # Live ends a terminal's last frame with a newline, not a file's


def dashboard(snap: mon.Snapshot, title: str, session: list[mon.Verdict]) -> Group:
    """One frame: progress per phase, running jobs, the latest verdicts (all writers)."""
    parts: list[Any] = [Text(title, style="bold"), _progress_table(snap)]
    parts.append(_running_table(snap))
    parts.append(_recent_table(snap))
    if session:
        parts.append(Text("flagged by this monitor:", style="bold"))
        parts.extend(Text(f"  {describe(v)}") for v in session)
    return Group(*parts)


def _progress_table(snap: mon.Snapshot) -> Table:
    table = Table(title="Progress", title_justify="left")
    for name in ("experiment", "phase", "progress", "done", "states"):
        table.add_column(name)
    for row in snap.phases:
        done = row.counts.get(State.DONE.value, 0)
        counts = Text()
        for state in State:
            if row.counts.get(state.value):
                counts.append(
                    f"{row.counts[state.value]} {state.value}  ", render.STATE_STYLE[state]
                )
        bar = ProgressBar(total=max(row.total, 1), completed=done, width=30)
        table.add_row(row.experiment, row.phase, bar, f"{done}/{row.total}", counts)
    return table


def _running_table(snap: mon.Snapshot) -> Table:
    shown = f"{len(snap.running)} of {snap.running_total}" if snap.running else "none"
    table = Table(title=f"Running ({shown})", title_justify="left")
    for name in (
        "job",
        "experiment / phase",
        "try",
        "host",
        "gpus",
        "elapsed",
        "heartbeat",
        "params",
    ):
        table.add_column(name)
    for job in snap.running:
        table.add_row(
            str(job.id),
            f"{job.experiment} / {job.phase}",
            f"{job.attempt}/{job.max_attempts}",
            job.host or "",
            job.gpus or "",
            _duration(job.elapsed_s),
            f"{_duration(job.heartbeat_age_s)} ago" if job.heartbeat_age_s is not None else "",
            render.compact(job.params, 40),
        )
    return table


def _recent_table(snap: mon.Snapshot) -> Table:
    table = Table(title="Latest verdicts", title_justify="left")
    for name in ("at", "job", "verdict", "reason", "by"):
        table.add_column(name)
    for v in snap.recent:
        at = v.at.astimezone().strftime("%H:%M:%S")
        table.add_row(at, str(v.job_id), render.state_text(v.state), v.reason or "", v.actor or "")
    return table


def _duration(seconds: float | None) -> str:
    """``75`` → ``1m15s``; hours and days for long jobs."""
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


# --------------------------------------------------------------------------
# jobdb logs


@app.command()
def logs(
    job: Annotated[int, typer.Argument(metavar="JOB", help="The job id (see jobdb list).")],
    db: DbOption = None,
    attempt: Annotated[
        int | None,
        typer.Option(
            "--attempt", "-a", min=1, metavar="N", help="Attempt N (default: the latest)."
        ),
    ] = None,
    stdout: Annotated[bool, typer.Option("--stdout", help="Only the standard output.")] = False,
    stderr: Annotated[bool, typer.Option("--stderr", help="Only the standard error.")] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing as the log grows, until the attempt ends."
        ),
    ] = False,
    tail: Annotated[
        int | None,
        typer.Option("--tail", "-n", min=0, metavar="N", help="Start with the last N lines only."),
    ] = None,
) -> None:
    """Print a job's output (stdout and stderr) of its latest attempt or of --attempt N.

    Examples:

      jobdb logs 42 --stderr --tail 50

      jobdb logs 42 --follow
    """
    streams = [s for s, only in (("stdout", stdout), ("stderr", stderr)) if only]
    store = open_store(db)
    with store.read() as conn:
        found = logfiles.find(conn, job, attempt)
    cursors = found.cursors(streams or logfiles.STREAMS)
    if not (follow and _active(store, found)):
        logfiles.require_files(found, cursors)
    if tail is not None:
        for cursor in cursors:
            if cursor.exists():
                cursor.skip_to_last_lines(tail)
    chunks: Iterator[tuple[logfiles.Cursor, bytes]] = (
        logfiles.follow(cursors, lambda: _active(store, found))
        if follow
        else logfiles.read_all(cursors)
    )
    _print_chunks(chunks, several=len(cursors) > 1)


def _print_chunks(chunks: Iterator[tuple[logfiles.Cursor, bytes]], *, several: bool) -> None:
    out = _LogWriter(sys.stdout.buffer, several=several)
    try:
        for cursor, block in chunks:
            out.write(cursor, block)
    except BrokenPipeError:
        # The reader (head, less) has seen enough: not an error. Point stdout at
        # /dev/null so that the flush at exit does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _active(store: Store, found: logfiles.AttemptLogs) -> bool:
    with store.read() as conn:
        return logfiles.is_active(conn, found.job_id, found.attempt)


class _LogWriter:
    """Raw bytes to stdout, with a ``==> stream: path <==`` line whenever the file changes."""

    def __init__(self, sink: BinaryIO, *, several: bool) -> None:
        self.sink = sink
        self.several = several
        self.last: logfiles.Cursor | None = None
        self.at_line_start = True

    def write(self, cursor: logfiles.Cursor, block: bytes) -> None:
        if self.several and cursor is not self.last:
            gap = b"" if self.at_line_start else b"\n"
            self.sink.write(gap + f"==> {cursor.stream}: {cursor.path} <==\n".encode())
            self.last = cursor
        self.sink.write(block)
        self.sink.flush()
        self.at_line_start = block.endswith(b"\n")
