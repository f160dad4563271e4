"""The trigger that records every job state change as an event.

A trigger rather than an ``INSERT`` next to each ``UPDATE``: the old state is
only known inside the database at the moment of the update (``RETURNING``
gives new values), and a trigger cannot be forgotten by a future query.

PostgreSQL uses a statement-level trigger with transition tables, so a
cascade that moves 20,000 jobs writes its events in one set-based
``INSERT``; SQLite only has row triggers, which are cheap there.

The same DDL is used by ``metadata.create_all()`` (through :func:`attach`)
and by the Alembic migration that introduced it, so both produce one schema.
"""

from __future__ import annotations

from sqlalchemy import DDL, Table, event

TRIGGER_NAME = "jobs_state_events"
FUNCTION_NAME = "jobdb_record_state_events"

SQLITE_CREATE = f"""
CREATE TRIGGER {TRIGGER_NAME} AFTER UPDATE OF state ON jobs
FOR EACH ROW WHEN OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO events (job_id, from_state, to_state, reason, actor, at)
    VALUES (NEW.id, OLD.state, NEW.state, NEW.state_reason, NEW.state_actor,
            strftime('%Y-%m-%d %H:%M:%f', 'now'));
END
"""

POSTGRES_CREATE_FUNCTION = f"""
CREATE FUNCTION {FUNCTION_NAME}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (job_id, from_state, to_state, reason, actor, at)
    SELECT n.id, o.state, n.state, n.state_reason, n.state_actor, statement_timestamp()
    FROM jobdb_new_rows n JOIN jobdb_old_rows o ON o.id = n.id
    WHERE o.state IS DISTINCT FROM n.state
    ORDER BY n.id;
    RETURN NULL;
END
$$
"""

POSTGRES_CREATE_TRIGGER = f"""
CREATE TRIGGER {TRIGGER_NAME} AFTER UPDATE ON jobs
REFERENCING OLD TABLE AS jobdb_old_rows NEW TABLE AS jobdb_new_rows
FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION_NAME}()
"""

SQLITE_DROP = f"DROP TRIGGER IF EXISTS {TRIGGER_NAME}"
POSTGRES_DROP = [
    f"DROP TRIGGER IF EXISTS {TRIGGER_NAME} ON jobs",
    f"DROP FUNCTION IF EXISTS {FUNCTION_NAME}()",
]


def create_statements(dialect: str) -> list[str]:
    """The DDL that creates the trigger on ``dialect`` ('sqlite' or 'postgresql')."""
    if dialect == "sqlite":
        return [SQLITE_CREATE]
    return [POSTGRES_CREATE_FUNCTION, POSTGRES_CREATE_TRIGGER]


def drop_statements(dialect: str) -> list[str]:
    """The DDL that removes the trigger on ``dialect``."""
    return [SQLITE_DROP] if dialect == "sqlite" else POSTGRES_DROP


def attach(jobs: Table) -> None:
    """Create the trigger whenever ``metadata.create_all()`` creates ``jobs``."""
    for dialect in ("sqlite", "postgresql"):
        for statement in create_statements(dialect):
            # DDL() formats its text with %; the SQLite strftime needs %% then.
            ddl = DDL(statement.replace("%", "%%")).execute_if(dialect=dialect)
            event.listen(jobs, "after_create", ddl)
