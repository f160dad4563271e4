"""Job states and the arrows between them (DESIGN §3).

This module is pure: no database, no subprocess. Every guarded ``UPDATE`` in
:mod:`jobdb.queries` takes its ``WHERE state IN (...)`` list from
:func:`sources`, so the table below is the single definition of what may
happen to a job.

::

    waiting  --parents all done-->               ready
    ready    --claimed by a dispatcher/worker--> queued
    waiting  --claimed behind its parents' Slurm jobs
               (--slurm-dependencies, afterok)--> queued
    queued   --runner started-->                 running
    ready    --`jobdb run JOB` by hand-->        running
    queued   --released (submission failed)-->   ready
    queued   --Slurm will not run it (dependency never satisfied):
               a parent is being retried-->      waiting
               a parent ended for good-->        blocked
    running  --exit 0, result stored-->          done
    running  --program failed (exit != 0)-->     failed
    queued/running --lost (heartbeat, process gone, node failure,
                     oom, timeout, cancelled outside jobdb)--> crashed
    failed/crashed --attempt < max_attempts-->   ready
    waiting/ready/queued/running/blocked --user cancel--> cancelled
    waiting  --a parent ended for good-->        blocked
    reset: ready/done/failed/crashed/cancelled/blocked --> ready or waiting
           (ready --> waiting too, when a parent is reset under it)

Queued and running jobs are never reset directly: their process may still be
alive, so they are cancelled at their executor first (running → cancelled)
and then reset. That ordering is what keeps a reset from running a job twice.

A queued job that goes back to waiting or blocked never started: it waited
in Slurm behind a parent's Slurm job, which did not end well, so Slurm
will not start it (see :mod:`jobdb.queries.slurmdeps`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class State(enum.StrEnum):
    """The state of a job, stored as this short string."""

    WAITING = "waiting"
    READY = "ready"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CRASHED = "crashed"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"


W, R, Q, RUN = State.WAITING, State.READY, State.QUEUED, State.RUNNING
D, F, C, X, B = State.DONE, State.FAILED, State.CRASHED, State.CANCELLED, State.BLOCKED

#: Allowed arrows: ``TRANSITIONS[a]`` is the set of states a job in ``a`` may move to.
TRANSITIONS: dict[State, frozenset[State]] = {
    W: frozenset({R, Q, B, X}),
    R: frozenset({Q, RUN, W, X}),
    Q: frozenset({RUN, R, W, B, C, X}),
    RUN: frozenset({D, F, C, X}),
    D: frozenset({R, W}),
    F: frozenset({R, W}),
    C: frozenset({R, W}),
    X: frozenset({R, W}),
    B: frozenset({R, W, X}),
}

#: A job in one of these states has an executor (process, Slurm job) behind it.
ACTIVE: frozenset[State] = frozenset({Q, RUN})
#: The job will not change again unless a user resets it (or a retry re-readies it).
FINISHED: frozenset[State] = frozenset({D, F, C, X})
#: Not finished: the job still has something ahead of it.
UNFINISHED: frozenset[State] = frozenset(State) - FINISHED - {B}
#: States a reset may start from (active jobs are cancelled first).
RESETTABLE: frozenset[State] = frozenset({R, D, F, C, X, B})
#: States a user cancel may start from.
CANCELLABLE: frozenset[State] = frozenset(s for s in State if X in TRANSITIONS[s])
#: Verdicts that leave descendants blocked when no retry is left.
FAILURES: frozenset[State] = frozenset({F, C, X})


class IllegalTransition(ValueError):
    """The state table has no arrow between these two states."""

    def __init__(self, source: State, target: State) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[source])) or "nothing"
        super().__init__(f"a {source} job cannot become {target} (it may become: {allowed})")
        self.source = source
        self.target = target


def can_transition(source: State | str, target: State | str) -> bool:
    """Whether the state table has an arrow ``source → target``."""
    return State(target) in TRANSITIONS[State(source)]


def check_transition(source: State | str, target: State | str) -> None:
    """Raise :class:`IllegalTransition` unless ``source → target`` is an arrow."""
    if not can_transition(source, target):
        raise IllegalTransition(State(source), State(target))


def sources(target: State | str, among: Iterable[State | str] | None = None) -> tuple[State, ...]:
    """States from which a job may move to ``target``, optionally narrowed to ``among``.

    The result is what a guarded ``UPDATE … WHERE state IN (…)`` uses; it is
    sorted so that the generated SQL is stable (and cached by SQLAlchemy).
    Narrowing to a state that has no arrow to ``target`` is a programming
    error and raises, so a caller cannot silently widen a guard.
    """
    target = State(target)
    allowed = {s for s, targets in TRANSITIONS.items() if target in targets}
    if among is not None:
        wanted = {State(s) for s in among}
        for s in wanted - allowed:
            raise IllegalTransition(s, target)
        allowed &= wanted
    return tuple(sorted(allowed))


def parse_states(names: Iterable[str]) -> list[State]:
    """Turn user-typed state names into states, with a message listing the valid ones."""
    result = []
    for name in names:
        try:
            result.append(State(name.strip().lower()))
        except ValueError:
            valid = ", ".join(s.value for s in State)
            raise ValueError(f"unknown state {name!r} (expected one of: {valid})") from None
    return result
