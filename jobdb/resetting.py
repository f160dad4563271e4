"""``jobdb reset`` and ``jobdb cancel`` as services: selection → roots → preview → act.

A *selection* (:class:`~jobdb.selectors.JobFilter`) names the roots. Reset
takes the roots and every job below them; cancel takes the roots and blocks
the waiting jobs below them. :func:`preview_reset` / :func:`preview_cancel`
read what would change without writing; :func:`reset` / :func:`cancel` plan
again inside one write transaction (the rows locked), apply the plan with
guarded updates (:mod:`jobdb.queries.reset`), commit, and only then stop the
programs of the queued and running jobs among them: once the change is
committed no supervisor can record "done" for the attempt any more, and each
one stops its program at its next heartbeat if jobdb cannot do it here.

Without ``cascade``, a reset refuses (:class:`NeedsCascade`, nothing written)
when a job below the selection has run or is running: resetting its parent
would silently make its result stale. Waiting, ready and blocked jobs below
need no permission: they have nothing to lose and simply wait again.
"""

from __future__ import annotations

import concurrent.futures
import getpass
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, Select, select

from jobdb import procs, selectors
from jobdb.errors import BadInput, LostRace, NotFound
from jobdb.models import Experiment, Job, Phase
from jobdb.queries import reset as rq
from jobdb.queries.reset import Member, ResetPlan, Snapshot
from jobdb.selectors import JobFilter
from jobdb.states import ACTIVE, CANCELLABLE, State
from jobdb.store import Store

#: States below the selection that a reset touches only with ``--cascade``.
NEEDS_CASCADE: frozenset[State] = frozenset(State) - {State.WAITING, State.READY, State.BLOCKED}
#: Previews of at most this many jobs list each job (a tree); larger ones count.
TREE_LIMIT = 40
#: Seconds a program gets between SIGTERM and SIGKILL.
GRACE_S = 5.0


class NeedsCascade(BadInput):
    """Jobs below the selection have run or are running: resetting needs --cascade."""

    def __init__(self, message: str, *, would_touch: list[Change], hint: str | None) -> None:
        super().__init__(message, hint=hint)
        #: The jobs below the selection that ``--cascade`` would reset, counted.
        self.would_touch = would_touch


@dataclass(frozen=True)
class Change:
    """How many jobs of one phase go from one state to another."""

    experiment: str
    phase: str
    before: str
    after: str
    count: int


@dataclass(frozen=True)
class Node:
    """One job of a small preview, with its children inside the affected set."""

    id: int
    phase: str
    params: dict[str, Any]
    before: str
    after: str
    children: tuple[int, ...]


@dataclass
class Preview:
    """What a reset or cancel would do, read without writing."""

    action: str
    cascade: bool
    #: The jobs the selection matched, then every affected job.
    roots: list[int]
    ids: frozenset[int]
    changes: list[Change]
    #: Selected jobs a cancel leaves alone (already finished).
    skipped: list[Change] = field(default_factory=list)
    #: Each job, for a tree; None above :data:`TREE_LIMIT` jobs.
    nodes: dict[int, Node] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {
            "action": self.action,
            "cascade": self.cascade,
            "roots": self.roots,
            "jobs": len(self.ids),
            "changes": [asdict(c) for c in self.changes],
            "skipped": [asdict(c) for c in self.skipped],
        }
        if self.nodes is not None:
            data["tree"] = [asdict(node) for node in self.nodes.values()]
        return data


@dataclass(frozen=True)
class Stopped:
    """What became of the program of a job that was queued or running."""

    job_id: int
    attempt: int
    state: str
    executor: str | None
    host: str | None
    #: ``terminated`` (here), ``gone`` (nothing ran here), ``not started`` (queued), or
    #: ``supervisor`` (on another host: its supervisor stops it at its next heartbeat).
    outcome: str
    detail: str


@dataclass
class Outcome:
    """What a reset or cancel did (committed)."""

    action: str
    changes: list[Change]
    skipped: list[Change] = field(default_factory=list)
    stopped: list[Stopped] = field(default_factory=list)
    #: Jobs whose attempt row was completed from the job row before it was cleared.
    archived: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "jobs": sum(c.count for c in self.changes),
            "changes": [asdict(c) for c in self.changes],
            "skipped": [asdict(c) for c in self.skipped],
            "stopped": [asdict(s) for s in self.stopped],
            "archived": self.archived,
        }


# --------------------------------------------------------------------------
# reset


def preview_reset(store: Store, selector: JobFilter, *, cascade: bool) -> Preview:
    """What :func:`reset` would do now (raises what it would raise), without writing."""
    with store.read() as conn:
        snap, _, targets = _plan_reset(conn, selector, cascade=cascade, lock=False)
        return _preview(conn, "reset", cascade, snap, targets)


def reset(
    store: Store,
    selector: JobFilter,
    *,
    cascade: bool,
    actor: str | None = None,
    expect: Iterable[int] | None = None,
    grace_s: float = GRACE_S,
) -> Outcome:
    """Reset the selected jobs and everything below them, in one transaction.

    ``expect`` is the set of job ids a preview showed: if the affected set
    differs now, nothing is written (:class:`LostRace`), because the user
    agreed to something else.
    """
    reason = f"reset by {user()}"
    with store.write() as conn:
        snap, plan, targets = _plan_reset(conn, selector, cascade=cascade, lock=True)
        _check_expected(conn, expect, snap.members.keys())
        applied = rq.apply_reset(conn, plan, actor=actor or actor_name("reset"), reason=reason)
        changes = _changes(conn, snap.members.values(), targets)
    stopped = stop_all(plan.cancel, grace_s, store.identity)
    return Outcome("reset", changes, stopped=stopped, archived=applied.archived)


def _plan_reset(
    conn: Connection, selector: JobFilter, *, cascade: bool, lock: bool
) -> tuple[Snapshot, ResetPlan, dict[int, State]]:
    snap = rq.snapshot(conn, _roots_query(conn, selector), lock=lock)
    _require_match(conn, selector, snap.roots)
    if not cascade:
        _check_cascade(conn, snap)
    blockers = {p for p, state in snap.outside.items() if state in rq.BLOCKING}
    targets = _reset_targets(conn, snap, blockers)
    return snap, _reset_plan(snap, targets, blockers), targets


def _reset_targets(conn: Connection, snap: Snapshot, blockers: set[int]) -> dict[int, State]:
    """Where each affected job ends: ready, waiting, or (under a failed parent) blocked.

    Jobs below the selection wait for their reset parents. A selected job
    is ready when all its parents are done; none of them is being reset,
    since everything below a selected job is in the set.
    """
    below = {m.id for m in snap.below}
    top = [m.id for m in snap.roots if m.id not in below]
    waits = {c for c, p in snap.parent_edges if snap.outside.get(p) not in (None, State.DONE)}
    kept_blocked = rq.below(conn, sorted(blockers)) & snap.members.keys() if blockers else set()
    targets = {job_id: State.WAITING for job_id in below}
    targets.update({job_id: State.WAITING if job_id in waits else State.READY for job_id in top})
    targets.update({job_id: State.BLOCKED for job_id in kept_blocked})
    return targets


def _reset_plan(snap: Snapshot, targets: dict[int, State], blockers: set[int]) -> ResetPlan:
    """The moves that take each job from its state to its target."""
    members = snap.members
    below = {m.id for m in snap.below}

    def to_waiting(m: Member) -> bool:
        # Blocked jobs end blocked by way of waiting, unless they stay blocked.
        return (
            targets[m.id] != State.READY
            and m.state != State.WAITING
            and not (m.state == State.BLOCKED and targets[m.id] == State.BLOCKED)
        )

    expect_blocked = sorted(
        i for i, t in targets.items() if t == State.BLOCKED and members[i].state != State.BLOCKED
    )
    return ResetPlan(
        cancel=[m for m in members.values() if m.state in ACTIVE],
        archive=[m.id for m in members.values() if m.unarchived],
        roots_ready=[
            m.id for m in snap.roots if targets[m.id] == State.READY and m.state != State.READY
        ],
        roots_waiting=[m.id for m in snap.roots if m.id not in below and to_waiting(m)],
        below_waiting=[m.id for m in snap.below if to_waiting(m)],
        block_under=sorted(blockers) if expect_blocked else [],
        expect_blocked=expect_blocked,
    )


def _check_cascade(conn: Connection, snap: Snapshot) -> None:
    """Refuse (nothing written) when jobs below the selection have run or are running."""
    roots = {m.id for m in snap.roots}
    touched = [m for m in snap.below if m.id not in roots and m.state in NEEDS_CASCADE]
    if not touched:
        return
    counts = _changes(conn, touched, {m.id: State.WAITING for m in touched})
    per_phase: dict[tuple[str, str], list[str]] = {}
    for c in counts:
        per_phase.setdefault((c.experiment, c.phase), []).append(f"{c.count:,} {c.before}")
    lines = "\n".join(f"  {e} / {p}: {', '.join(n)}" for (e, p), n in per_phase.items())
    raise NeedsCascade(
        f"{len(touched):,} job(s) below the selection have run or are running; "
        f"--cascade would reset them too (to waiting, stopping the running ones):\n{lines}",
        would_touch=counts,
        hint="add --cascade (with --dry-run first to see every job it touches)",
    )


# --------------------------------------------------------------------------
# cancel


def preview_cancel(store: Store, selector: JobFilter) -> Preview:
    """What :func:`cancel` would do now, without writing."""
    with store.read() as conn:
        snap = rq.snapshot(conn, _roots_query(conn, selector), with_below=False, lock=False)
        chosen, targets, skipped = _plan_cancel(conn, selector, snap)
        blocked = rq.waiting_below(conn, [m.id for m in chosen])
        targets.update({m.id: State.BLOCKED for m in blocked})
        preview = _preview(conn, "cancel", False, Snapshot(chosen, blocked), targets)
        preview.skipped = skipped
        return preview


def cancel(
    store: Store,
    selector: JobFilter,
    *,
    actor: str | None = None,
    expect: Iterable[int] | None = None,
    grace_s: float = GRACE_S,
) -> Outcome:
    """Cancel the selected unfinished jobs and block the waiting jobs below them."""
    reason = f"cancelled by {user()}"
    with store.write() as conn:
        snap = rq.snapshot(conn, _roots_query(conn, selector), with_below=False, lock=True)
        chosen, targets, skipped = _plan_cancel(conn, selector, snap)
        below = rq.waiting_below(conn, [m.id for m in chosen])
        _check_expected(conn, expect, {m.id for m in (*chosen, *below)})
        applied = rq.apply_cancel(conn, chosen, actor=actor or actor_name("cancel"), reason=reason)
        blocked = [m for m in below if m.id in set(applied.blocked)]
        targets.update({m.id: State.BLOCKED for m in blocked})
        changes = _changes(conn, [*chosen, *blocked], targets)
    active = [m for m in chosen if m.state in ACTIVE]
    return Outcome(
        "cancel", changes, skipped=skipped, stopped=stop_all(active, grace_s, store.identity)
    )


def _plan_cancel(
    conn: Connection, selector: JobFilter, snap: Snapshot
) -> tuple[list[Member], dict[int, State], list[Change]]:
    _require_match(conn, selector, snap.roots)
    chosen = [m for m in snap.roots if m.state in CANCELLABLE]
    left = [m for m in snap.roots if m.state not in CANCELLABLE]
    if not chosen:
        ended = Counter(m.state.value for m in left)
        counts = ", ".join(f"{n:,} {state}" for state, n in sorted(ended.items()))
        raise BadInput(f"nothing to cancel: the selected jobs have all ended ({counts})")
    skipped = _changes(conn, left, {})
    return chosen, {m.id: State.CANCELLED for m in chosen}, skipped


# --------------------------------------------------------------------------
# stopping programs: the one place that talks to executors


#: How to stop the programs of many jobs of one executor (``jobs.executor``) at once,
#: e.g. one ``scancel`` for every Slurm job; executors not listed here are stopped
#: where they run (:func:`stop_process`). The Slurm executor registers itself on
#: first use (:func:`_stoppers`).
Stopper = Callable[[Sequence[Member], float, str | None], list[Stopped]]
STOPPERS: dict[str, Stopper] = {}


def _stoppers() -> dict[str, Stopper]:
    if "slurm" not in STOPPERS:
        from jobdb.slurm.stop import scancel_stopper  # imports this module: registered late

        STOPPERS["slurm"] = scancel_stopper
    return STOPPERS


def stop_process(job: Member, grace_s: float, database: str | None = None) -> Stopped:
    """Terminate the job's process group on this host; elsewhere its supervisor does it."""

    def stopped(outcome: str, detail: str) -> Stopped:
        return Stopped(
            job.id, job.attempt, job.state.value, job.executor, job.host, outcome, detail
        )

    if job.state == State.QUEUED and job.host is None:
        return stopped("not started", "its runner finds it cancelled and does not start it")
    if job.host != procs.HOST:
        where = f"on {job.host}" if job.host else "host unknown"
        return stopped("supervisor", f"{where}: stopped within one heartbeat interval")
    if procs.terminate_job(job.id, job.attempt, job.pid, grace_s, database):
        return stopped("terminated", f"process group {job.pid or '?'} on {job.host}")
    return stopped("gone", f"no process of this attempt was running on {job.host}")


def stop_all(
    jobs: Sequence[Member], grace_s: float = GRACE_S, database: str | None = None
) -> list[Stopped]:
    """Stop many programs at once: one call per executor that has a :data:`Stopper`
    (one ``scancel`` for all Slurm jobs), the others in parallel, each of which may
    take its grace period. Results come in the order of ``jobs``."""
    if not jobs:
        return []
    stoppers = _stoppers()
    by_id: dict[int, Stopped] = {}
    for executor, stopper in stoppers.items():
        mine = [job for job in jobs if job.executor == executor]
        if mine:
            by_id.update((s.job_id, s) for s in stopper(mine, grace_s, database))
    rest = [job for job in jobs if job.executor not in stoppers]
    if rest:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(rest))) as pool:
            done = pool.map(lambda job: stop_process(job, grace_s, database), rest)
            by_id.update((s.job_id, s) for s in done)
    return [by_id[job.id] for job in jobs]


# --------------------------------------------------------------------------
# shared helpers


def user() -> str:
    """The login name for reasons such as "reset by alice"."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def actor_name(verb: str) -> str:
    """Who made a change, for ``state_actor``: verb, user, host and process."""
    return f"{verb}:{user()}@{socket.gethostname()}:{os.getpid()}"


def _roots_query(conn: Connection, selector: JobFilter) -> Select[Any]:
    if not (
        selector.ids or selector.experiments or selector.phases or selector.states or selector.where
    ):
        raise BadInput(
            "say which jobs: give job ids, or --experiment/--phase/--state/--where",
            hint="jobdb list shows the jobs and their ids",
        )
    return selectors.apply(selectors.jobs_joined(Job.id), selector, conn.dialect.name)


def _require_match(conn: Connection, selector: JobFilter, roots: Sequence[Member]) -> None:
    if selector.ids:
        found = set(conn.execute(select(Job.id).where(Job.id.in_(selector.ids))).scalars())
        missing = sorted(set(selector.ids) - found)
        if missing:
            shown = ", ".join(map(str, missing[:10]))
            raise NotFound(
                f"no job with id {shown}", hint="jobdb list shows the jobs and their ids"
            )
    if not roots:
        raise BadInput("no jobs match the selection", hint="jobdb list takes the same options")


def _check_expected(conn: Connection, expect: Iterable[int] | None, now: Iterable[int]) -> None:
    if expect is None:
        return
    changed = set(expect) ^ set(now)
    if changed:
        states = dict(conn.execute(select(Job.id, Job.state).where(Job.id.in_(changed))).all())
        raise LostRace(
            f"the affected jobs changed since the preview ({len(changed):,} job(s) differ); "
            "nothing was changed: run the command again",
            lost={int(i): states.get(i) for i in sorted(changed)},
        )


def _names(conn: Connection, phase_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """phase id → (experiment name, phase name)."""
    stmt = (
        select(Phase.id, Experiment.name, Phase.name)
        .join(Experiment, Experiment.id == Phase.experiment_id)
        .where(Phase.id.in_(sorted(set(phase_ids))))
    )
    return {int(i): (e, p) for i, e, p in conn.execute(stmt)}


def _changes(
    conn: Connection, members: Iterable[Member], targets: dict[int, State]
) -> list[Change]:
    """Counts per (experiment, phase, state before, state after), in a stable order.

    A job without a target keeps its state.
    """
    counted = Counter((m.phase_id, m.state, targets.get(m.id, m.state)) for m in members)
    names = _names(conn, {phase for phase, _, _ in counted})
    order = {state: index for index, state in enumerate(State)}
    rows = sorted(counted.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], order[kv[0][2]]))
    return [
        Change(*names[phase], before.value, after.value, n) for (phase, before, after), n in rows
    ]


def _preview(
    conn: Connection, action: str, cascade: bool, snap: Snapshot, targets: dict[int, State]
) -> Preview:
    members = snap.members
    preview = Preview(
        action=action,
        cascade=cascade,
        roots=[m.id for m in snap.roots],
        ids=frozenset(members),
        changes=_changes(conn, members.values(), targets),
    )
    if len(members) <= TREE_LIMIT:
        preview.nodes = _nodes(conn, members, targets)
    return preview


def _nodes(
    conn: Connection, members: dict[int, Member], targets: dict[int, State]
) -> dict[int, Node]:
    ids = sorted(members)
    rows = conn.execute(select(Job.id, Job.params).where(Job.id.in_(ids)))
    params: dict[int, dict[str, Any]] = {int(i): p for i, p in rows}
    names = _names(conn, {m.phase_id for m in members.values()})
    children: dict[int, list[int]] = {i: [] for i in ids}
    for parent, child in rq.edges_within(conn, ids):
        children[parent].append(child)
    return {
        i: Node(
            i,
            names[members[i].phase_id][1],
            params[i],
            members[i].state.value,
            targets.get(i, members[i].state).value,
            tuple(children[i]),
        )
        for i in ids
    }
