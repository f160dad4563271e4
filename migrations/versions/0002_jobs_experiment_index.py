"""jobs: index experiment_id alone, not (experiment_id, state)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Every change of a job's state rewrote its entry in each index that holds
``state``: on SQLite about four of the 21 pages a claimed, started and
finished job writes went to ``(experiment_id, state)``. The claim index
``(state, priority, id)`` and ``(phase_id, state)`` already serve lookups by
state and the per-phase counts; what needs the experiment is finding its
jobs (and the cascade when one is deleted), which ``experiment_id`` alone
serves without being touched by state changes.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_experiment_id_state"))
        batch_op.create_index(batch_op.f("ix_jobs_experiment_id"), ["experiment_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_experiment_id"))
        batch_op.create_index(
            batch_op.f("ix_jobs_experiment_id_state"), ["experiment_id", "state"], unique=False
        )
