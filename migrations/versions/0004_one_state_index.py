"""jobs: one index holding state; SQLite writes a claim's attempt row by trigger

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

A job's state changes three times on its way from ready to done, and each
change rewrites the job's entry in every index that holds ``state``. There
were two: the claim index ``(state, priority DESC, id)`` and ``(phase_id,
state)`` for the per-phase counts. ``(phase_id, state)`` goes; the claim
index now ends in ``phase_id`` and ``experiment_id``, so a claim narrowed to
a phase or an experiment still checks them in the index. The per-phase
counts of ``jobdb status`` group the jobs in a temporary B-tree instead
(at 100,000 jobs on SQLite: 67 ms, not 23). On
SQLite a claimed, started and finished job wrote 16 WAL pages; it now writes
about 13 (``scripts/bench/claims.py``; docs/benchmarks.md, W3).

On SQLite the trigger ``jobs_new_attempts`` now writes the attempt row of a
claim (``jobdb.triggers``): the claim is one statement on both backends.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from jobdb import triggers

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_phase_id_state"))
        batch_op.drop_index("ix_jobs_claim")
        batch_op.create_index(
            "ix_jobs_claim",
            ["state", sa.literal_column("priority DESC"), "id", "phase_id", "experiment_id"],
            unique=False,
        )
    for statement in triggers.attempt_create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in triggers.attempt_drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_claim")
        batch_op.create_index(
            "ix_jobs_claim", ["state", sa.literal_column("priority DESC"), "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_jobs_phase_id_state"), ["phase_id", "state"], unique=False
        )
