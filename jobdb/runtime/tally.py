"""What a supervisor is asked to do (:class:`Options`) and what it did (:class:`Tally`).

Kept apart from the engine so that the commands building the options and
printing the summary need not read the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jobdb.runtime.child import Outcome
from jobdb.states import State


@dataclass
class Options:
    """What to run and when to stop."""

    actor: str
    runs_dir: Path
    executor: str = "local"
    heartbeat_interval: float = 10.0
    experiment_ids: Sequence[int] | None = None
    phase_ids: Sequence[int] | None = None
    job_ids: Sequence[int] | None = None
    max_jobs: int | None = None
    max_time: float | None = None
    #: ``idle``: stop when nothing is claimable (worker, run); ``drained``: stop when
    #: nothing in scope is ready, queued or running anywhere (dispatch --watch).
    until: Literal["idle", "drained"] = "idle"
    idle_poll: float = 0.5
    #: Hand out only GPUs no other supervisor on this host holds (the jobs placed here,
    #: as the database records them). Off inside a Slurm job, whose device numbers
    #: are its allocation's, and for a run a dispatcher placed.
    share_host_gpus: bool = False
    stop_running_on_interrupt: bool = False
    #: ``jobdb run --attempt N``: the attempt a dispatcher claimed for this run.
    expect_attempt: int | None = None
    #: A Slurm array task (``worker --slurm-array``): take the queued jobs recorded under
    #: this array id instead of claiming ready ones, and record ``external_id`` on each.
    submitted_as: str | None = None
    external_id: str | None = None
    #: The crash reason for programs stopped by a signal to this supervisor, when the
    #: executor knows better than "interrupted by SIGTERM" (Slurm: cancelled, timeout).
    interrupt_reason: Callable[[str], str | None] | None = None


@dataclass(frozen=True)
class Verdict:
    """One attempt this supervisor saw end."""

    job_id: int
    attempt: int
    phase: str
    outcome: Outcome
    retried: bool
    blocked: int
    seconds: float


@dataclass
class Tally:
    """What a supervisor did, for its summary."""

    started: int = 0
    verdicts: list[Verdict] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unfit: int = 0
    interrupted: str | None = None

    def count(self, state: State) -> int:
        return sum(1 for v in self.verdicts if v.outcome.verdict == state)


Report = Callable[[str], None]
