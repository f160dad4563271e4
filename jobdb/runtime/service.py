"""What the ``run``, ``dispatch`` and ``worker`` commands do, below the CLI.

Resolves experiment and phase names to ids, builds the slots of this
machine, and runs an :class:`~jobdb.runtime.engine.Engine`. Without
``--watch`` a local dispatch hands each claimed job to a detached
``jobdb run`` process (its own supervisor) and returns at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlalchemy import Connection, Table, select

from jobdb.errors import BadInput
from jobdb.models import Experiment, Phase
from jobdb.monitor import recover_host
from jobdb.procs import HOST, supervisor_token
from jobdb.queries.holders import held_on_host, place, set_supervisor, take_turns_on_host
from jobdb.runtime.engine import Engine, Options, Report, Verdict
from jobdb.runtime.gpus import detect_gpus, parse_gpu_list
from jobdb.runtime.slots import Slots
from jobdb.store import Store

experiments = cast(Table, Experiment.__table__)
phases = cast(Table, Phase.__table__)

DEFAULT_RUNS_DIR = "jobdb-runs"


@dataclass(frozen=True)
class Scope:
    """Which jobs a supervisor may take: experiment and phase ids (None: all)."""

    experiment_ids: list[int] | None = None
    phase_ids: list[int] | None = None


def runs_dir(given: str | None) -> Path:
    """Where job folders go: ``--runs-dir``, else ``$JOBDB_RUNS_DIR``, else ./jobdb-runs."""
    return Path(given or os.environ.get("JOBDB_RUNS_DIR") or DEFAULT_RUNS_DIR).absolute()


def resolve_scope(
    conn: Connection, experiment_names: Sequence[str], phase_names: Sequence[str]
) -> Scope:
    """Names → ids; an unknown name is an error listing the known ones."""
    exp_ids: list[int] | None = None
    if experiment_names:
        known = dict(conn.execute(select(experiments.c.name, experiments.c.id)).tuples().all())
        _require(experiment_names, known, "experiment")
        exp_ids = [known[name] for name in experiment_names]
    phase_ids: list[int] | None = None
    if phase_names:
        query = select(phases.c.name, phases.c.id)
        if exp_ids is not None:
            query = query.where(phases.c.experiment_id.in_(exp_ids))
        rows = conn.execute(query).tuples().all()
        _require(phase_names, {name for name, _ in rows}, "phase")
        phase_ids = [pid for name, pid in rows if name in set(phase_names)]
    return Scope(exp_ids, phase_ids)


def _require(names: Sequence[str], known: Collection[str], what: str) -> None:
    known_names = sorted(known)
    for name in names:
        if name not in known_names:
            raise BadInput(
                f"no {what} named {name!r}",
                hint=f"known: {', '.join(known_names[:20]) or '(none)'}",
            )


def make_slots(gpus: str | None, slots: int | None, *, default_slots: int) -> Slots:
    """GPU devices from ``--gpus`` (else detected) and CPU slots from ``--slots``."""
    devices = parse_gpu_list(gpus) if gpus is not None else detect_gpus()
    count = default_slots if slots is None else slots
    if count < 0:
        raise BadInput(f"--slots {count}: expected a number ≥ 0")
    return Slots(devices, count)


def run_engine(
    store: Store,
    slots: Slots,
    options: Options,
    *,
    report: Report | None = None,
    on_verdict: Callable[[Verdict], None] | None = None,
    adopt: int | None = None,
) -> Engine:
    """Recover this host's jobs left by a dead supervisor, then run an engine to the end."""
    recover_host(store, actor=options.actor)
    engine = Engine(store, slots, options, report=report, on_verdict=on_verdict, adopt=adopt)
    engine.run()
    return engine


@dataclass(frozen=True)
class Detached:
    """A job handed to a detached ``jobdb run``."""

    job_id: int
    attempt: int
    pid: int
    gpus: tuple[str, ...]


def dispatch_detached(
    store: Store, slots: Slots, options: Options, db_url: str, runs: Path
) -> list[Detached]:
    """Claim what fits in this machine's free slots and start one ``jobdb run`` per job.

    Slots already used by this host's queued and running local jobs (from
    earlier dispatches) are subtracted first, so repeated dispatches never
    oversubscribe a GPU. The claim records the host and devices of each job
    it hands over: a ``jobdb run`` records them only when it starts, and a
    dispatch right after this one must see them taken before that. Two
    dispatchers on one host take turns from the count to the claim.
    """
    recover_host(store, actor=options.actor)
    engine = Engine(store, slots, options)
    handed: list[Detached] = []
    with store.write() as conn:
        take_turns_on_host(conn, HOST)
        _subtract_busy(conn, slots)
        claimed = engine.claim_for_others(conn)
        for job, gpus in claimed:
            place(conn, job.id, job.attempt, HOST, gpus)
    for job, gpus in claimed:
        proc = _spawn_run(job.id, job.attempt, gpus, db_url, runs, options.heartbeat_interval)
        handed.append(Detached(job.id, job.attempt, proc.pid, gpus))
    with store.write() as conn:
        for item in handed:
            set_supervisor(conn, item.job_id, item.attempt, supervisor_token(item.pid))
    return handed


def _subtract_busy(conn: Connection, slots: Slots) -> None:
    for job_id, devices in held_on_host(conn, HOST):
        slots.occupy(job_id, devices)


def _spawn_run(
    job_id: int, attempt: int, gpus: tuple[str, ...], db_url: str, runs: Path, beat: float
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "jobdb", "run", str(job_id), "--attempt", str(attempt)]
    argv += ["--runs-dir", str(runs), "--heartbeat-interval", str(beat)]
    argv += ["--gpus", ",".join(gpus) or "none"]
    env = {**os.environ, "JOBDB_URL": db_url}  # not in argv: ps would show a password
    log = runs / "dispatch.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
        )
