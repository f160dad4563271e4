"""results and attempt parameters: an absent value is SQL NULL, not JSON null

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

An attempt that ended without a result stored the JSON text ``null`` in
``attempts.result``, so ``result IS NOT NULL`` in plain SQL also counted
attempts that had none. The columns now map Python's None to SQL NULL
(``OptionalJSONType``); this revision turns the JSON nulls already stored
into SQL NULLs. The column types do not change. Downgrading changes nothing:
both read back as None.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: (table, column) of the optional JSON values.
COLUMNS = (("jobs", "result"), ("attempts", "result"), ("attempts", "params"))


def upgrade() -> None:
    json_null = "'null'::jsonb" if op.get_bind().dialect.name == "postgresql" else "'null'"
    for table, column in COLUMNS:
        op.execute(f"UPDATE {table} SET {column} = NULL WHERE {column} = {json_null}")


def downgrade() -> None:
    pass
