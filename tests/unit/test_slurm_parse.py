"""Reading Slurm's output and deciding verdicts from it (pure; the outputs are real ones)."""

from __future__ import annotations

import datetime as dt

import pytest

from jobdb.slurm import parse
from jobdb.slurm.poll import Watched, decide
from jobdb.states import State

ID = "0123456789abcdef"
NAME = f"jobdb-{ID}-5-1"
T0 = dt.datetime(2026, 1, 1, 12, 0, 0).astimezone()

# squeue -h -t all -o SQUEUE_FORMAT, as Slurm 22.05 prints it: a single job, a pending
# array (its own row), two tasks of it.
SQUEUE = f"""\
5|5|N/A|RUNNING|None|2026-01-01T12:00:01|{NAME}|jobdb {ID} h:1:2.00
9|9|0-2%2|PENDING|JobArrayTaskLimit|2026-01-01T12:00:02|jobdb-{ID}-p3|jobdb {ID} h:1:2.00
11|9|0|COMPLETED|None|2026-01-01T12:00:02|jobdb-{ID}-p3|jobdb {ID} h:1:2.00
12|9|1|RUNNING|None|2026-01-01T12:00:02|jobdb-{ID}-p3|jobdb {ID} a|b
"""
SACCT = f"""\
7|jobdb-{ID}-7-1|TIMEOUT|0:0|2026-01-01T12:00:03
7.batch|batch|CANCELLED|0:15|2026-01-01T12:00:03
8|jobdb-{ID}-8-1|CANCELLED by 0|0:0|2026-01-01T12:00:03
"""


def test_parsable_output() -> None:
    assert parse.parse_parsable("123\n") == "123"
    assert parse.parse_parsable("123;cluster\n") == "123"
    with pytest.raises(ValueError, match="no job id"):
        parse.parse_parsable("sbatch: error: Batch job submission failed\n")


def test_squeue_rows() -> None:
    rows = parse.parse_squeue(SQUEUE)
    assert [(r.job_id, r.array_id, r.task_id, r.state) for r in rows] == [
        ("5", None, None, "RUNNING"),
        ("9", "9", "0-2%2", "PENDING"),
        ("11", "9", "0", "COMPLETED"),
        ("12", "9", "1", "RUNNING"),
    ]
    assert rows[3].comment == f"jobdb {ID} a|b"  # the comment may hold the separator
    assert rows[0].submitted == dt.datetime(2026, 1, 1, 12, 0, 1).astimezone()


def test_sacct_rows_skip_steps_and_read_cancelled_by() -> None:
    rows = parse.parse_sacct(SACCT)
    assert [(r.job_id, r.state) for r in rows] == [("7", "TIMEOUT"), ("8", "CANCELLED")]


@pytest.mark.parametrize(
    ("state", "stderr", "reason"),
    [
        ("PENDING", None, None),
        ("RUNNING", None, None),
        ("COMPLETING", None, None),
        ("CONFIGURING", None, None),
        ("PREEMPTED", None, None),
        ("REQUEUED", None, None),
        ("REQUEUE_HOLD", None, None),
        ("COMPLETED", None, "lost"),
        ("CANCELLED", None, "cancelled outside jobdb"),
        ("TIMEOUT", None, "timeout"),
        ("OUT_OF_MEMORY", None, "oom"),
        ("NODE_FAIL", None, "node failure"),
        ("BOOT_FAIL", None, "boot failure"),
        ("DEADLINE", None, "deadline"),
        ("FAILED", None, "slurm job failed"),
        ("FAILED", "slurmstepd: error: Job 5 exceeded memory limit (9 > 8), being killed", "oom"),
        ("SOMETHING_NEW", None, "lost"),
    ],
)
def test_state_mapping(state: str, stderr: str | None, reason: str | None) -> None:
    assert parse.crash_reason(state, stderr) == reason


def test_config_values() -> None:
    text = "MaxArraySize            = 40\nAccountingStorageType   = accounting_storage/none\n"
    assert parse.parse_config_value(text, "MaxArraySize") == "40"
    show = "JobId=5 JobName=x\n   StdErr=/tmp/my runs/job.out\n   StdIn=/dev/null\n"
    assert parse.parse_stderr_path(show) == "/tmp/my runs/job.out"


def watched(job_id: int, state: State, ext: str, queued: dt.datetime = T0) -> Watched:
    return Watched(job_id, 1, state, ext, queued)


def test_decide_alive_ended_array_and_lost() -> None:
    seen = parse.parse_squeue(SQUEUE) + parse.parse_sacct(SACCT)
    active = [
        watched(5, State.RUNNING, "5"),  # running
        watched(6, State.QUEUED, "9"),  # waits in array 9, which has live tasks
        watched(7, State.RUNNING, "7"),  # purged from squeue, TIMEOUT in sacct
        watched(8, State.QUEUED, "8"),  # cancelled before it started
        watched(10, State.RUNNING, "99"),  # unknown to Slurm
    ]
    out = decide(active, seen, ID)
    assert {c.job.job_id: c.reason for c in out.crashes} == {
        7: "timeout",
        8: "cancelled outside jobdb",
        10: "lost",
    }
    assert out.release == []


def test_decide_releases_held_recorded_jobs() -> None:
    held = f"4|4|N/A|PENDING|JobHeldUser|2026-01-01T12:00:01|jobdb-{ID}-4-1|jobdb {ID} h:1:2.00"
    out = decide([watched(4, State.QUEUED, "4")], parse.parse_squeue(held), ID)
    assert out.release == ["4"] and out.crashes == []


def test_decide_ignores_a_reused_job_id() -> None:
    # Job id 5 now belongs to another database, or was submitted before our claim.
    other = SQUEUE.splitlines()[0].replace(ID, "ffffffffffffffff")
    out = decide([watched(5, State.RUNNING, "5")], parse.parse_squeue(other), ID)
    assert [c.reason for c in out.crashes] == ["lost"]
    late = T0 + dt.timedelta(hours=1)
    out = decide([watched(5, State.RUNNING, "5", late)], parse.parse_squeue(SQUEUE), ID)
    assert [c.reason for c in out.crashes] == ["lost"]


def test_decide_array_that_ended_without_taking_a_job() -> None:
    ended = "\n".join(
        line for line in SQUEUE.splitlines() if "|9|" in line and "RUNNING" not in line
    )
    ended = ended.replace("PENDING", "CANCELLED")
    out = decide([watched(6, State.QUEUED, "9")], parse.parse_squeue(ended), ID)
    assert [c.reason for c in out.crashes] == ["cancelled outside jobdb"]


def test_decide_failed_waits_for_stderr() -> None:
    failed = f"5|5|N/A|FAILED|NonZeroExitCode|2026-01-01T12:00:01|{NAME}|c"
    out = decide([watched(5, State.RUNNING, "5")], parse.parse_squeue(failed), ID)
    assert list(out.failed) == ["5"] and out.crashes == []


@pytest.mark.parametrize(
    ("state", "reason", "why"),
    [
        ("COMPLETING", "None", "cancelled outside jobdb"),
        ("COMPLETING", "TimeLimit", "timeout"),
        ("COMPLETING", "NodeDown", "node failure"),
        ("CANCELLED", "None", "cancelled outside jobdb"),
        ("RUNNING", "None", None),
    ],
)
def test_ending_reason_while_slurm_ends_the_job(state: str, reason: str, why: str | None) -> None:
    job = parse.SlurmJob("5", state, None, NAME, reason=reason)
    assert parse.ending_reason(job) == why


def dependent_row(job_id: int, state: str, reason: str) -> str:
    name = f"jobdb-{ID}-{job_id}-1"
    return f"{job_id}|{job_id}|N/A|{state}|{reason}|2026-01-01T12:00:01|{name}|jobdb {ID} h:1:2.00"


def test_decide_gives_back_a_dependent_slurm_will_never_start() -> None:
    rows = "\n".join(
        [
            dependent_row(21, "CANCELLED", "DependencyNeverSatisfied"),  # kill_invalid_depend
            dependent_row(22, "PENDING", "DependencyNeverSatisfied"),  # left pending forever
            dependent_row(23, "PENDING", "Dependency"),  # still waiting for its parent
        ]
    )
    active = [watched(i, State.QUEUED, str(i)) for i in (21, 22, 23)]
    out = decide(active, parse.parse_squeue(rows), ID)
    assert [job.job_id for job in out.unchain] == [21, 22]
    assert out.cancel == ["22"]
    assert out.crashes == [] and out.failed == {}


def test_decide_a_dependent_whose_slurm_job_is_gone_never_ran() -> None:
    # 24 waits on an unfinished parent: gone from Slurm, it never started (not "lost").
    # 25 has its parents done: the same record is a crash, as for any queued job.
    active = [watched(24, State.QUEUED, "24"), watched(25, State.QUEUED, "25")]
    seen = parse.parse_squeue(dependent_row(25, "CANCELLED", "None"))
    out = decide(active, seen, ID, dependents={24})
    assert [job.job_id for job in out.unchain] == [24]
    assert [(c.job.job_id, c.reason) for c in out.crashes] == [(25, "cancelled outside jobdb")]


def test_decide_a_running_job_is_never_given_back() -> None:
    seen = parse.parse_squeue(dependent_row(26, "CANCELLED", "DependencyNeverSatisfied"))
    out = decide([watched(26, State.RUNNING, "26")], seen, ID, dependents={26})
    assert out.unchain == [] and [c.reason for c in out.crashes] == ["cancelled outside jobdb"]
