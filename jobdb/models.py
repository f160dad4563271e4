"""The schema: experiments, phases, jobs, edges, attempts, events (DESIGN §2, §5).

Typed SQLAlchemy 2.0 models. Constraint names come from one naming
convention so they are identical on SQLite, PostgreSQL and in migrations.
States are short strings guarded by a named CHECK constraint (not a
PostgreSQL ENUM, which would need a migration for every new state).

Events are written by a database trigger on ``jobs.state`` (see
:mod:`jobdb.triggers`), so *every* state change is recorded, whoever makes
it; the statement that changes the state sets ``state_reason`` and
``state_actor`` on the row and the trigger copies them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from jobdb.sqltypes import JSONType, OptionalJSONType, UTCDateTime, db_now
from jobdb.states import State

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

_STATES_SQL = ", ".join(f"'{s.value}'" for s in State)

# BIGINT on PostgreSQL; SQLite needs plain INTEGER for a rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _created() -> Mapped[dt.datetime]:
    return mapped_column(UTCDateTime(), server_default=db_now(), nullable=False)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads this class attribute)
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


class Experiment(Base):
    """A named spec and where it came from (provenance)."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    spec_text: Mapped[str] = mapped_column(Text, default="")
    spec_format: Mapped[str] = mapped_column(String(20), default="yaml")
    spec_hash: Mapped[str] = mapped_column(String(64), default="")
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    git_branch: Mapped[str | None] = mapped_column(String(200))
    host: Mapped[str | None] = mapped_column(String(255))
    user: Mapped[str | None] = mapped_column(String(100))
    jobdb_version: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = _created()

    phases: Mapped[list[Phase]] = relationship(
        back_populates="experiment", order_by="Phase.position", cascade="all, delete-orphan"
    )


class Phase(Base):
    """A step of an experiment: what to run, its resources, retry policy, dependencies."""

    __tablename__ = "phases"
    __table_args__ = (UniqueConstraint("experiment_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)
    command: Mapped[str | None] = mapped_column(Text)
    task: Mapped[str | None] = mapped_column(String(400))
    #: The phase's full definition (grid, after, group_by, select, resources, retry).
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = _created()

    experiment: Mapped[Experiment] = relationship(back_populates="phases")


class Job(Base):
    """One grid point of one phase, and everything about its current attempt."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("phase_id", "params_hash"),
        CheckConstraint(f"state IN ({_STATES_SQL})", name="state"),
        CheckConstraint("attempt >= 0", name="attempt_nonnegative"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        # Only the claim index below holds state: every state change rewrites the
        # entries of each index that does (migrations 0002 and 0004 say more).
        Index(None, "experiment_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    phase_id: Mapped[int] = mapped_column(ForeignKey("phases.id", ondelete="CASCADE"))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    params_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=State.WAITING.value)
    state_reason: Mapped[str | None] = mapped_column(Text)
    state_actor: Mapped[str | None] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = _created()
    updated_at: Mapped[dt.datetime] = _created()
    queued_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None]
    executor: Mapped[str | None] = mapped_column(String(40))
    external_id: Mapped[str | None] = mapped_column(String(100))
    worker: Mapped[str | None] = mapped_column(String(200))
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    gpus: Mapped[str | None] = mapped_column(String(100))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(OptionalJSONType)
    work_dir: Mapped[str | None] = mapped_column(Text)
    stdout_path: Mapped[str | None] = mapped_column(Text)
    stderr_path: Mapped[str | None] = mapped_column(Text)


class Edge(Base):
    """Parent → child: the child may start only when the parent is done."""

    __tablename__ = "edges"
    __table_args__ = (
        CheckConstraint("parent_id <> child_id", name="no_self_edge"),
        # The primary key (parent_id, child_id) indexes the way down; this, the way up.
        Index(None, "child_id", "parent_id"),
    )

    parent_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    child_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )


class Attempt(Base):
    """One try of a job. Never deleted by a reset: the history is the audit trail."""

    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    #: The state this attempt ended in (queued/running while it is under way).
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any] | None] = mapped_column(OptionalJSONType)
    executor: Mapped[str | None] = mapped_column(String(40))
    external_id: Mapped[str | None] = mapped_column(String(100))
    array_id: Mapped[str | None] = mapped_column(String(100))
    worker: Mapped[str | None] = mapped_column(String(200))
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    gpus: Mapped[str | None] = mapped_column(String(100))
    queued_at: Mapped[dt.datetime] = _created()
    started_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(OptionalJSONType)
    stdout_path: Mapped[str | None] = mapped_column(Text)
    stderr_path: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    """A state change of a job: from, to, why, who, when (written by a trigger)."""

    __tablename__ = "events"
    __table_args__ = (Index(None, "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[dt.datetime] = _created()


# The claim query walks this index: ready jobs, best priority first, oldest first.
# It is also the index for every lookup by state; the phase and experiment at
# its end let a claim narrowed to them check them without reading the job.
Index("ix_jobs_claim", Job.state, Job.priority.desc(), Job.id, Job.phase_id, Job.experiment_id)

# Imported for its side effect: the triggers attach to the jobs and attempts tables.
from jobdb import triggers as _triggers  # noqa: E402

_triggers.attach(cast(Table, Job.__table__), cast(Table, Attempt.__table__))
