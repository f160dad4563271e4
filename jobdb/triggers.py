"""The triggers on ``jobs``: every state change becomes an event; on SQLite,
every new attempt gets its attempt row.

A trigger rather than an ``INSERT`` next to each ``UPDATE``: the old state is
only known inside the database at the moment of the update (``RETURNING``
gives new values), and a trigger cannot be forgotten by a future query.

PostgreSQL uses a statement-level trigger with transition tables, so a
cascade that moves 20,000 jobs writes its events in one set-based
``INSERT``; SQLite only has row triggers, which are cheap there.

On SQLite a second trigger writes the attempt row when a claim raises
``jobs.attempt``. SQLite serialises writers, so each statement a claim runs
inside its write transaction is time every other worker waits for; the
trigger makes the claim one statement, as the data-modifying ``WITH`` of
:func:`jobdb.queries.claims.claim` does on PostgreSQL (where a trigger would
cost a PL/pgSQL call per row instead of saving a round trip).

The same DDL is used by ``metadata.create_all()`` (through :func:`attach`)
and by the Alembic migrations that introduced them (0001, 0004), so both
produce one schema.
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

ATTEMPT_TRIGGER_NAME = "jobs_new_attempts"

#: Copies what a claim sets on the job into the new attempt row, as
#: ``jobdb.queries.claims._ATTEMPT_COLUMNS`` does on PostgreSQL.
SQLITE_CREATE_ATTEMPT = f"""
CREATE TRIGGER {ATTEMPT_TRIGGER_NAME} AFTER UPDATE OF attempt ON jobs
FOR EACH ROW WHEN NEW.attempt > OLD.attempt
BEGIN
    INSERT INTO attempts (job_id, number, state, params, executor, worker, queued_at)
    VALUES (NEW.id, NEW.attempt, NEW.state, NEW.params, NEW.executor, NEW.worker,
            strftime('%Y-%m-%d %H:%M:%f', 'now'));
END
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


def attempt_create_statements(dialect: str) -> list[str]:
    """The DDL of the attempt-row trigger: SQLite only (see the module doc)."""
    return [SQLITE_CREATE_ATTEMPT] if dialect == "sqlite" else []


def attempt_drop_statements(dialect: str) -> list[str]:
    """The DDL that removes the attempt-row trigger."""
    return [f"DROP TRIGGER IF EXISTS {ATTEMPT_TRIGGER_NAME}"] if dialect == "sqlite" else []


def names(dialect: str) -> list[str]:
    """The triggers on ``jobs`` a current schema has on ``dialect``, sorted."""
    return sorted([TRIGGER_NAME, *([ATTEMPT_TRIGGER_NAME] if dialect == "sqlite" else [])])


def attach(jobs: Table, attempts: Table) -> None:
    """Create the triggers whenever ``metadata.create_all()`` creates their tables."""
    for dialect in ("sqlite", "postgresql"):
        for statement in create_statements(dialect):
            event.listen(jobs, "after_create", _ddl(statement, dialect))
        # The attempt trigger inserts into attempts, created after jobs.
        for statement in attempt_create_statements(dialect):
            event.listen(attempts, "after_create", _ddl(statement, dialect))


def _ddl(statement: str, dialect: str) -> DDL:
    # DDL() formats its text with %; the SQLite strftime needs %% then.
    return DDL(statement.replace("%", "%%")).execute_if(dialect=dialect)
