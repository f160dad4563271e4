"""Gathering everything ``jobdb report`` shows about one experiment (read-only).

:func:`gather` reads the experiment, its phases, state counts, results,
plots and failures into a :class:`Report` of plain data;
:mod:`jobdb.analysis.html` renders it. Per phase, the results table groups
over folds and seeds when the phase has them (mean ± std computed by the
database) and lists jobs otherwise; plots follow the same choice of keys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, select

from jobdb import logs, views
from jobdb.analysis import fetch, plotdata, table
from jobdb.analysis.fetch import JobRow, Selection
from jobdb.analysis.plotdata import PlotData
from jobdb.analysis.table import ResultTable
from jobdb.errors import JobDBError, MissingDependency, NotFound
from jobdb.models import Experiment, Job, Phase
from jobdb.selectors import JobFilter
from jobdb.states import State

#: Parameters a results table averages over rather than shows.
REPEATS = ("fold", "n_folds", "seed")
MAX_JOB_ROWS = 200
MAX_PLOTS_PER_PHASE = 3
MAX_FAILED = 50
TAIL_LINES = 20


@dataclass
class Plot:
    """One figure: its data, and its PNG once drawn (None when it could not be)."""

    data: PlotData
    png: bytes | None = None


@dataclass
class PhaseReport:
    """One phase: how it hangs together, its job counts, results and plots."""

    name: str
    after: str | None
    config: dict[str, Any]
    counts: dict[str, int]
    results: ResultTable | None = None
    #: The parameters a grouped table averages over (folds, seeds).
    over: list[str] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)


@dataclass(frozen=True)
class FailedJob:
    """A failed or crashed job with why, and the end of its log."""

    id: int
    phase: str
    state: str
    params: dict[str, Any]
    reason: str | None
    error: str | None
    exit_code: int | None
    log_tail: str | None


@dataclass
class Report:
    """All of it, for one experiment."""

    experiment: str
    spec_text: str
    provenance: dict[str, Any]
    phases: list[PhaseReport]
    failed: list[FailedJob]
    created_at: dt.datetime | None = None
    notes: list[str] = field(default_factory=list)


def gather(conn: Connection, name: str) -> Report:
    """Read the experiment ``name`` into a :class:`Report` (plots not drawn yet)."""
    row = conn.execute(select(Experiment.__table__).where(Experiment.name == name)).first()
    if row is None:
        raise NotFound(f"no experiment named {name!r}", hint="jobdb status lists them")
    counts = {s.phase: s.counts for s in views.status(conn, JobFilter(experiments=(name,)))}
    phases = conn.execute(
        select(Phase.name, Phase.config)
        .where(Phase.experiment_id == row.id)
        .order_by(Phase.position)
    ).all()
    report = Report(
        experiment=name,
        spec_text=row.spec_text or "",
        provenance=_provenance(row),
        phases=[
            PhaseReport(phase, (config or {}).get("after"), config or {}, counts.get(phase, {}))
            for phase, config in phases
        ],
        failed=failed_jobs(conn, row.id),
        created_at=row.created_at,
    )
    for phase in report.phases:
        _fill_results(conn, name, phase)
    return report


def _provenance(row: Row[Any]) -> dict[str, Any]:
    return {
        "spec format": row.spec_format,
        "spec hash": row.spec_hash,
        "git commit": row.git_commit,
        "git dirty": row.git_dirty,
        "git branch": row.git_branch,
        "host": row.host,
        "user": row.user,
        "jobdb version": row.jobdb_version,
    }


def _fill_results(conn: Connection, experiment: str, phase: PhaseReport) -> None:
    """The phase's results table and plot data, from its done jobs."""
    selection = Selection(experiments=(experiment,), phases=(phase.name,), states=(State.DONE,))
    scope = fetch.resolve(conn, selection)
    rows = list(fetch.job_rows(conn, scope))
    if not rows:
        return
    varying = table.varying_keys(row.params for row in rows)
    keys = [key for key in varying if key not in REPEATS]
    if keys and len(keys) < len(varying):
        phase.results = table.grouped(fetch.aggregate(conn, scope, keys), keys)
        phase.over = [key for key in varying if key not in keys]
    else:
        phase.results = table.per_job(rows)
        table.top(phase.results, MAX_JOB_ROWS)
    phase.plots = [Plot(data) for data in plots_for(rows, keys)][:MAX_PLOTS_PER_PHASE]


def plots_for(rows: Sequence[JobRow], keys: Sequence[str]) -> list[PlotData]:
    """Learning curves for list metrics, then each numeric metric by the first key."""
    flat = [table.flatten(row.result) for row in rows]
    names = sorted({name for values in flat for name in values})
    line = keys[1] if len(keys) > 1 else None
    out = []
    for name in names:
        values = [values[name] for values in flat if name in values]
        if all(isinstance(v, list) for v in values):
            out.append(plotdata.curve(rows, name, keys[0] if keys else None))
    for name in names:
        values = [values[name] for values in flat if name in values]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if keys and numeric:
            out.append(plotdata.lines(rows, name, keys[0], line))
    return out


def draw(report: Report) -> None:
    """Draw every plot; without matplotlib the report says so instead."""
    from jobdb.analysis import plotting

    try:
        for phase in report.phases:
            for plot in phase.plots:
                plot.png = plotting.png_bytes(plot.data)
    except MissingDependency as exc:
        report.notes.append(f"plots left out: {exc} ({exc.hint})")


def failed_jobs(conn: Connection, experiment_id: int) -> list[FailedJob]:
    """Failed and crashed jobs (at most :data:`MAX_FAILED`), with their log tails."""
    query = (
        select(
            Job.id,
            Phase.name,
            Job.state,
            Job.params,
            Job.state_reason,
            Job.error,
            Job.exit_code,
        )
        .join(Phase, Phase.id == Job.phase_id)
        .where(Job.experiment_id == experiment_id)
        .where(Job.state.in_([State.FAILED.value, State.CRASHED.value]))
        .order_by(Job.id)
        .limit(MAX_FAILED)
    )
    return [
        FailedJob(job_id, phase, state, params, reason, error, code, log_tail(conn, job_id))
        for job_id, phase, state, params, reason, error, code in conn.execute(query)
    ]


def log_tail(conn: Connection, job_id: int, lines: int = TAIL_LINES) -> str | None:
    """The last ``lines`` of the job's stderr (else stdout), or None when there is no log."""
    try:
        cursors = logs.find(conn, job_id).cursors(["stderr", "stdout"])
    except JobDBError:
        return None
    for cursor in cursors:
        if cursor.exists():
            cursor.skip_to_last_lines(lines)
            tail = b"".join(cursor.read_new()).decode("utf-8", errors="replace")
            if tail.strip():
                return tail
    return None
