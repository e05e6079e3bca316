"""Tables of SPEC §3; the only place the schema is declared (migrations mirror it)."""

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, synonym

from crawlhub.repo.types import BigIntPK, JSONType, UTCDateTime, utcnow

# A run the dispatcher has not sent yet: pending, no message (crawlhub.scheduling.dispatch).
HELD = text("status = 'pending' AND message_id IS NULL")
DEDUPED = text("dedup_hash IS NOT NULL")
RUNNING = text("status = 'running'")
NOT_OVER = text("status IN ('pending', 'running', 'retrying')")
UNDER_WAY = text(
    "status IN ('running', 'retrying') OR (status = 'pending' AND message_id IS NOT NULL)"
)

# Deterministic constraint names so migrations can address them on both dialects.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


def _uuid() -> uuid.UUID:
    return uuid.uuid4()


class Project(Base):
    """What is deployed: a Scrapy project or a Python package, with numbered versions."""

    __tablename__ = "project"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    current_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # How many of its runs may run at once, its spiders' together (None: no limit).
    max_concurrent_runs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index(None, "created_at"),)


class Spider(Base):
    """A runnable entry of a project, with its own settings, schedules and runs."""

    __tablename__ = "spider"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    # Its project's kind, kept here for the filters and the run path.
    kind: Mapped[str] = mapped_column(String(16))
    entry: Mapped[str] = mapped_column(String(255))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    env: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timeout_s: Mapped[int] = mapped_column(Integer, default=3600)
    max_retries: Mapped[int] = mapped_column(Integer, default=3)
    retry_backoff_min_s: Mapped[int] = mapped_column(Integer, default=10)
    retry_backoff_max_s: Mapped[int] = mapped_column(Integer, default=600)
    dedup_keys: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    alert_on_zero_items: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Its runs' own limits (memory_mb, processes, open_files, disk_mb, files), over the defaults.
    limits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Its data quality rules (crawlhub.quality.rules), over those its version ships.
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # The labels a node must have to run it (None: any node).
    requires: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    # How many of its runs may run at once (None: no limit).
    max_concurrent_runs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(lazy="joined", innerjoin=True)

    __table_args__ = (Index(None, "created_at"), Index(None, "project_id"))

    @classmethod
    def standalone(cls, name: str, kind: str, *, current_version: int | None = None,
                   **fields: Any) -> "Spider":  # fmt: skip
        """A spider in a project of its own name (what a spider created alone gets)."""
        project = Project(name=name, kind=kind, current_version=current_version)
        return cls(name=name, kind=kind, project=project, **fields)

    @property
    def current_version(self) -> int | None:
        """The version its runs start from: its project's current one."""
        return self.project.current_version


# A version's environment: being built (or its spiders listed), usable, or not buildable.
ENV_STATUSES = ("building", "ready", "failed")


class ProjectVersion(Base):
    __tablename__ = "project_version"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    # The client's name for it (Scrapyd's `version`); None: known by its number only.
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    archive: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    format: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    files: Mapped[int] = mapped_column(Integer)
    # The Scrapy spiders `scrapy list` found in it (None: not listed yet, or a python project).
    spiders: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    # Its requirements, normalised, one per line (None: the platform's environment).
    requirements: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The data quality rules its crawlhub.toml gives, by spider name.
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    env_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    env_status: Mapped[str] = mapped_column(String(16), default="ready")
    env_log: Mapped[str | None] = mapped_column(Text, nullable=True)
    env_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("project_id", "number"),
        Index(None, "env_key"),
        Index(None, "project_id", "label"),
    )


class Schedule(Base):
    __tablename__ = "schedule"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    spider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("spider.id", ondelete="CASCADE"))
    cron: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # Scrapy's, per run
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    overlap: Mapped[str] = mapped_column(String(16), default="forbid")
    catchup: Mapped[str] = mapped_column(String(16), default="latest")
    starting_deadline_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    jitter_s: Mapped[int] = mapped_column(Integer, default=0)
    # The labels a node must have to run its runs (None: its spider's).
    requires: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    next_fire_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_fire_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index(None, "next_fire_at"),
        Index(None, "spider_id", "created_at"),
    )


class Task(Base):
    __tablename__ = "task"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    spider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("spider.id", ondelete="CASCADE"))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("schedule.id", ondelete="SET NULL"), nullable=True
    )
    trigger: Mapped[str] = mapped_column(String(16))
    # A Scrapyd client's job id: any string it picked, usable wherever a task id is.
    job_id: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    scheduled_for: Mapped[datetime | None] = mapped_column(nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # Scrapy's, applied with -s
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    items_count: Mapped[int] = mapped_column(Integer, default=0)
    items_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    items_invalid: Mapped[int] = mapped_column(Integer, default=0)
    log_lines: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # The top-level keys of its stored items, in the order they first came (recorded with the
    # items, so a CSV export knows its columns without reading them; None: not recorded).
    item_keys: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    # Its data quality verdict (pass, warn, fail; None: no rules) and what it rests on: the
    # reasons, the per-field statistics of its items, whether its data is suspect.
    verdict: Mapped[str | None] = mapped_column(String(8), nullable=True)
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # The labels a node must have to run it: its own, its schedule's or its spider's.
    requires: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    # Higher first among held runs (manual 10, scheduled 0 by default; Scrapyd's priority).
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Not dispatched before this (a schedule's fire, its jitter later; None: at once).
    due_at: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The current (or last) attempt's spider process, in its worker's PID namespace.
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Who started it: a user or token for a manual or Scrapyd run (None: a schedule, a retry).
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The fencing token of the current attempt: bumped by every claim and every reap.
    fence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def waiting_reason(self) -> str | None:
        """Why a pending run does not start (told when read by the dispatcher's rules: not
        stored)."""
        found: str | None = getattr(self, "_waiting_reason", None)
        return found

    @waiting_reason.setter
    def waiting_reason(self, reason: str | None) -> None:
        self._waiting_reason = reason

    @property
    def node_id(self) -> str | None:
        """The node (worker process, host:pid) that ran its last attempt."""
        return self.worker.rsplit(":", 1)[0] if self.worker else None

    __table_args__ = (
        UniqueConstraint("schedule_id", "scheduled_for"),
        Index(None, "created_at"),
        Index(None, "spider_id", "created_at"),
        Index(None, "status", "created_at"),
        Index(None, "trigger", "created_at"),
        Index(None, "verdict", "created_at"),
        Index(None, "schedule_id", "created_at"),
        # The reaper scans running tasks by heartbeat age.
        Index(None, "status", "heartbeat_at"),
        # The overview's runs not over, by hour, read from the index alone.
        Index(
            "ix_task_not_over",
            "created_at",
            postgresql_include=["status", "items_count"],
            postgresql_where=NOT_OVER,
            sqlite_where=NOT_OVER,
        ),
        # The overview's "Running now", oldest first.
        Index("ix_task_running", "started_at", postgresql_where=RUNNING, sqlite_where=RUNNING),
        # The dispatcher counts the runs under way (repo/dispatch.py, under_way()).
        Index(
            "ix_task_under_way",
            "spider_id",
            "status",
            "worker",
            postgresql_where=UNDER_WAY,
            sqlite_where=UNDER_WAY,
        ),
        # The dispatcher reads held runs (pending, not sent) per spider, best first.
        Index(
            "ix_task_held",
            "spider_id",
            "priority",
            "created_at",
            postgresql_where=HELD,
            sqlite_where=HELD,
        ),
    )


class LogLine(Base):
    __tablename__ = "log_line"

    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("task.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    stream: Mapped[str] = mapped_column(String(8))
    ts: Mapped[datetime] = mapped_column()
    text: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index(None, "task_id", "attempt", "seq"), Index(None, "ts"))


class Item(Base):
    __tablename__ = "item"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # No foreign keys (their per-row checks halved COPY's speed): the data lifecycle deletes
    # a run's items after the run, in the same transaction (repo/items.py, delete_for_tasks).
    spider_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[dict[str, Any]] = mapped_column()
    dedup_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        # Only items with a dedup hash can collide: the others have no entry.
        Index(
            "ix_item_dedup",
            "spider_id",
            "dedup_hash",
            unique=True,
            postgresql_where=DEDUPED,
            sqlite_where=DEDUPED,
        ),
        Index(None, "spider_id", "id"),
        Index(None, "task_id", "id"),
        Index(None, "created_at"),
        # Time filters and retention within one spider.
        Index(None, "spider_id", "created_at"),
    )


class Alert(Base):
    __tablename__ = "alert"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    type: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    spider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("spider.id", ondelete="CASCADE"), nullable=True
    )
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("task.id", ondelete="SET NULL"), nullable=True
    )
    is_read: Mapped[bool] = mapped_column(Boolean, default=False)
    count: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index(None, "created_at"),
        Index(None, "is_read", "level"),
        # Folding looks up the latest alert of a type for a spider.
        Index(None, "spider_id", "type", "last_seen_at"),
    )


class Channel(Base):
    __tablename__ = "channel"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str | None] = mapped_column(String(512), nullable=True)
    min_level: Mapped[str] = mapped_column(String(16), default="error")
    spider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("spider.id", ondelete="CASCADE"), nullable=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def has_secret(self) -> bool:
        """Whether a signing secret is set (the secret itself never leaves the server)."""
        return bool(self.secret)


class Delivery(Base):
    __tablename__ = "delivery"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    alert_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alert.id", ondelete="CASCADE"))
    channel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channel.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # When a pending delivery is due (the outbox: whoever claims it moves this forward).
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("alert_id", "channel_id"),
        Index(None, "channel_id"),
        Index(None, "status", "next_attempt_at"),
    )


class WorkerProcess(Base):
    """A worker process, registered at its start and heartbeating its row (the database's
    clock) until it stops; the only thing "workers online" counts."""

    __tablename__ = "worker"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64))
    threads: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()
    stopped_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Its labels (CRAWLHUB_WORKER_LABELS: `browser`, `region=eu`), as given.
    labels: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    # What its heartbeat last read of its machine: load, cpus, memory, disk, environments.
    machine: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # Draining: it finishes its runs and takes no new ones (for a rolling upgrade).
    draining: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (Index(None, "last_seen_at"),)

    @property
    def last_heartbeat(self) -> datetime:
        """When it was last heard from (the API's name for it)."""
        return self.last_seen_at


class User(Base):
    """A person who signs in: by password (hashed with Argon2), or a personal token."""

    __tablename__ = "app_user"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name = synonym("username")  # what the lookups by id or name (repo.db.get_by_ref) read
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # "<issuer> <sub>" of a user made by single sign-on (who they are at the provider).
    sso_subject: Mapped[str | None] = mapped_column(String(512), nullable=True, unique=True)
    # Its role on every project: none, viewer, operator, developer, or admin (an instance
    # admin: users, channels, queues and every project). Memberships raise it per project.
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped by a password change or a disable: the sessions signed before stop working.
    session_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ApiToken(Base):
    """A personal API token: shown once, stored as its SHA-256, with scopes no wider than
    its owner's role."""

    __tablename__ = "api_token"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # its first characters, to tell it apart
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    # The projects it may reach (ids, as text); None: every project its owner may.
    project_ids: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("user_id", "name"),)


class ProjectMember(Base):
    """A user's role on one project (viewer, operator, developer, admin: a project admin,
    who deletes and manages members), above the role it has on every project."""

    __tablename__ = "project_member"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index(None, "user_id"),)


class RunHour(Base):
    """Finished runs counted per hour of their creation (UTC), spider and final status, with
    their items: the overview's charts and 24-hour figures, read without a scan of `task`.
    Kept in the transaction that ends a run (repo/rollup.py)."""

    __tablename__ = "run_hour"

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    spider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("spider.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        # The week's hours read from the index alone.
        Index(None, "hour", "status", postgresql_include=["spider_id", "runs", "items"]),
    )


class SignInFailures(Base):
    """Failed sign-ins counted per account name (known or not) and per address."""

    __tablename__ = "sign_in_failures"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # user:<name>, addr:<ip>
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime] = mapped_column()
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)


class AuditEvent(Base):
    """Who did what to which resource, when and from where; written in the transaction of
    the change."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)  # kept once gone
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(300))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (Index(None, "at"), Index(None, "actor", "at"), Index(None, "action", "at"))
