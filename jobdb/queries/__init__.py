"""Every statement that changes job state. Reviewers read this file for concurrency.

Rules this module keeps:

- Each state change is a guarded ``UPDATE … WHERE state IN (allowed)
  RETURNING``; the allowed list comes from :mod:`jobdb.states`. When fewer
  rows come back than were asked for, the caller lost a race:
  :class:`~jobdb.errors.LostRace` names the jobs and their current states.
- Claiming is one statement: a materialised CTE picks up to N ready jobs
  (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the ``BEGIN
  IMMEDIATE`` write lock serialises claimers) and the ``UPDATE`` marks them
  queued. Never SELECT-then-UPDATE.
- Readiness and cascades are set-based (``NOT EXISTS``, recursive CTEs).
- Timestamps come from the database clock.
- Functions take an open write transaction (``Store.write()``); the caller
  decides what commits together.

The event log is written by a trigger (:mod:`jobdb.triggers`) from the
``state_reason``/``state_actor`` columns each statement here sets.
"""

from jobdb.queries.claims import (
    ClaimedJob,
    Finish,
    claim,
    finish,
    release,
    start,
)
from jobdb.queries.core import CHUNK, lost_race, transition
from jobdb.queries.graph import (
    block_descendants,
    demote_ready_with_unfinished_parents,
    descendants_cte,
    promote_children,
    promote_waiting,
)
from jobdb.queries.holders import heartbeat, record_submission, stale_running
from jobdb.queries.reset import ResetPlan, apply_cancel, apply_reset, subtree_cte

__all__ = [
    "CHUNK",
    "ClaimedJob",
    "Finish",
    "ResetPlan",
    "apply_cancel",
    "apply_reset",
    "block_descendants",
    "claim",
    "demote_ready_with_unfinished_parents",
    "descendants_cte",
    "finish",
    "heartbeat",
    "lost_race",
    "promote_children",
    "promote_waiting",
    "record_submission",
    "release",
    "stale_running",
    "start",
    "subtree_cte",
    "transition",
]
