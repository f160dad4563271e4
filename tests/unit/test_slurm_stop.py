"""Cancelling the Slurm jobs of attempts jobdb gave up on (pure: Slurm's commands are faked)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jobdb.slurm.commands import Result, Slurm
from jobdb.slurm.stop import cancel_ghosts

ID = "0123456789abcdef"
# squeue -h -t all -o SQUEUE_FORMAT: ours running, ours ended, another database's, an array task.
SQUEUE = f"""\
5|5|N/A|RUNNING|None|2026-01-01T12:00:01|jobdb-{ID}-5-1|c
6|6|N/A|CANCELLED|None|2026-01-01T12:00:01|jobdb-{ID}-6-1|c
7|7|N/A|RUNNING|None|2026-01-01T12:00:01|jobdb-ffffffffffffffff-7-1|c
12|9|1|RUNNING|None|2026-01-01T12:00:02|jobdb-{ID}-p3|c
"""


class FakeSlurm:
    """Records the commands; squeue answers with SQUEUE (or fails)."""

    def __init__(self, squeue_rc: int = 0) -> None:
        self.commands: list[list[str]] = []
        self.squeue_rc = squeue_rc

    def __call__(
        self, argv: Sequence[str], stdin: str | None, env: Mapping[str, str] | None
    ) -> Result:
        self.commands.append(list(argv))
        if argv[0] == "squeue":
            if self.squeue_rc:
                return Result(self.squeue_rc, "", "slurm_load_jobs error: Socket timed out")
            return Result(0, SQUEUE, "")
        return Result(0, "", "")


def test_only_this_databases_live_jobs_of_their_own_are_cancelled() -> None:
    fake = FakeSlurm()
    assert cancel_ghosts(["5", "6", "7", "12"], ID, Slurm(runner=fake)) == ["5"]
    assert fake.commands[-1] == ["scancel", "5"]


def test_nothing_alive_nothing_cancelled() -> None:
    fake = FakeSlurm()
    assert cancel_ghosts(["6"], ID, Slurm(runner=fake)) == []
    assert [c[0] for c in fake.commands] == ["squeue"]


def test_a_failing_squeue_is_not_an_error() -> None:
    fake = FakeSlurm(squeue_rc=1)
    assert cancel_ghosts(["5"], ID, Slurm(runner=fake)) == []
    assert [c[0] for c in fake.commands] == ["squeue"]
