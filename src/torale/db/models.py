"""ORM tables, together so the schema reads in one place. Alembic migrations make them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from torale.db.types import EnumText, JSONType, UTCDateTime
from torale.statuses import (
    ACTIVE_EXECUTION_STATUSES,
    DeliveryStatus,
    ExecutionStatus,
    TaskState,
    Trigger,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, values: Iterable[str]) -> str:
    """SQL `column IN ('a', 'b')`, for CHECK constraints and partial indexes."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('user', 'admin')", name="role"),
        Index("uq_users_feed_token_hash", "feed_token_hash", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    clerk_user_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Moved on by database triggers whenever one of the user's tasks is written (0002), so a
    # cached task list is current exactly when its version is. Never set it from Python.
    tasks_version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The token in the user's feed URLs (`/feeds/<token>/…`), kept only as a keyed hash (0008):
    # None until made; rotating replaces it, so the old URLs stop at once.
    feed_token_hash: Mapped[str | None] = mapped_column(String(64))
    feed_token_created_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_user_created", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    key_prefix: Mapped[str] = mapped_column(String(12))
    # HMAC-SHA256 of the whole key, hex: the only form the key is kept in.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship(lazy="raise")

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(_one_of("state", TaskState), name="state"),
        CheckConstraint(
            "notify_behavior IN ('once', 'always', 'track_state')", name="notify_behavior"
        ),
        Index("ix_tasks_user_created", "user_id", "created_at"),
        Index("ix_tasks_user_state_created", "user_id", "state", "created_at"),
        Index("ix_tasks_state_next_run", "state", "next_run"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    search_query: Mapped[str] = mapped_column(Text)
    condition_description: Mapped[str] = mapped_column(Text)
    # URL targets: a plain string per whole page, {"url", "selector"} per part of one.
    urls: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    # How runs decide (model | change | rules), with the rules and change filters (0007).
    mode: Mapped[str] = mapped_column(String(16), default="model", server_default="model")
    rules: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    change: Mapped[dict[str, Any] | None] = mapped_column("change_options", JSONType)
    # How its urls are read (plain | browser; a target may say otherwise), and whether pages
    # read with the browser keep a screenshot (0010).
    render: Mapped[str] = mapped_column(String(16), default="plain", server_default="plain")
    screenshot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    schedule: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    notify_behavior: Mapped[str] = mapped_column(String(16))
    notifications: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    executor_type: Mapped[str] = mapped_column(String(64), default="llm_grounded_search")
    state: Mapped[TaskState] = mapped_column(EnumText(TaskState, 16), default=TaskState.ACTIVE)
    condition_met: Mapped[bool] = mapped_column(Boolean, default=False)
    last_known_state: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    last_notified_at: Mapped[datetime | None] = mapped_column()
    next_run: Mapped[datetime | None] = mapped_column()
    last_execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    context: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    state_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Why a paused task is paused when the user did not pause it ("account_deactivated"), so
    # that reactivating the account resumes exactly those tasks.
    paused_reason: Mapped[str | None] = mapped_column(String(32))
    # Runs in a row that failed because a selector matched nothing (0009); the owner is told
    # once when it reaches TORALE_SELECTOR_MISSES_TO_NOTIFY. A successful run (every selector
    # matched) and new urls set it back to 0.
    selector_misses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def targets(self) -> list[dict[str, Any]]:
        """The URL targets as objects (`urls` keeps plain strings for whole pages)."""
        return url_targets(self.urls)


def url_targets(urls: list[Any]) -> list[dict[str, Any]]:
    """Stored URL targets as objects: a plain string is a whole page."""
    return [{"url": u, "selector": None} if isinstance(u, str) else u for u in urls]


def columns_of(model: type[Base]) -> list[Any]:
    """A model's columns labelled with its attribute names, for reads that need no ORM
    objects (rows as mappings with the same keys; types and their conversions kept)."""
    return [
        attribute.columns[0].label(attribute.key) for attribute in model.__mapper__.column_attrs
    ]


class Execution(Base):
    """One run of a task. Triggers on this table move the owner's tasks_version (0003)."""

    __tablename__ = "executions"
    __table_args__ = (
        CheckConstraint(_one_of("status", ExecutionStatus), name="status"),
        CheckConstraint(_one_of("trigger", Trigger), name="trigger"),
        Index("ix_executions_task_created", "task_id", "created_at"),
        Index("ix_executions_user_created", "user_id", "created_at"),
        Index("ix_executions_status_created", "status", "created_at"),
        # At most one pending or running execution per task: run-now cannot start a
        # duplicate and scheduled runs of one task cannot overlap, whatever the race.
        Index(
            "uq_executions_one_active_per_task",
            "task_id",
            unique=True,
            sqlite_where=text(_one_of("status", ACTIVE_EXECUTION_STATUSES)),
            postgresql_where=text(_one_of("status", ACTIVE_EXECUTION_STATUSES)),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[ExecutionStatus] = mapped_column(EnumText(ExecutionStatus, 16))
    trigger: Mapped[Trigger] = mapped_column(EnumText(Trigger, 16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()
    # A pending or running execution whose lease has passed was orphaned (its process died);
    # the next run of the task marks it failed and takes the slot.
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    condition_met: Mapped[bool | None] = mapped_column(Boolean)
    change_summary: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    grounding_sources: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    notification: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    usage: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Hash of what the verdict was based on (query, condition, model, each source's text):
    # equal fingerprints let a run reuse the previous verdict without asking the model.
    evidence_fingerprint: Mapped[str | None] = mapped_column(String(64))


class Delivery(Base):
    """A notification to send: one per (execution, channel), queued in the run's transaction."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("execution_id", "channel_index", name="uq_deliveries_execution_channel"),
        Index("ix_deliveries_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_deliveries_user_created", "user_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    channel_index: Mapped[int] = mapped_column(Integer)
    channel_type: Mapped[str] = mapped_column(String(16))
    channel: Mapped[dict[str, Any]] = mapped_column(JSONType)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # pending → sending (claimed, leased) → delivered | failed; back to pending to retry.
    status: Mapped[DeliveryStatus] = mapped_column(
        EnumText(DeliveryStatus, 16), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeliveryAttempt(Base):
    """One try at sending a delivery: when, how it went, how long it took."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        Index("ix_delivery_attempts_delivery", "delivery_id", "attempted_at"),
        Index("ix_delivery_attempts_user_attempted", "user_id", "attempted_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    success: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)


class WebhookConfig(Base):
    """A user's webhook settings: the signing secret of all their webhooks, and an optional
    endpoint that receives every notification of their tasks."""

    __tablename__ = "webhook_configs"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Page(Base):
    """The last fetch of a URL, for conditional requests (ETag / Last-Modified) and reuse."""

    __tablename__ = "pages"

    url_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(String(512))
    last_modified: Mapped[str | None] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the media type and body the text was read from (None: not known).
    body_hash: Mapped[str | None] = mapped_column(String(64))
    # When the entry last changed: a read that finds the page as the entry has it (a 304, or
    # the same bytes, with the same validators) does not write it again.
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebSession(Base):
    """A browser's signed-in session. Only a hash of its id is kept: the id itself lives in the
    browser's cookie, so a leaked table signs nobody in."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_user", "user_id"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Absolute expiry: the session ends then however active it is.
    expires_at: Mapped[datetime] = mapped_column()


class SignInLink(Base):
    """A one-time sign-in link (`/signin?token=…`), kept as a hash, used at most once."""

    __tablename__ = "signin_links"
    __table_args__ = (Index("ix_signin_links_user", "user_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()


class SnapshotContent(Base):
    """A text some run read, stored once however many runs read it: keyed by its SHA-256,
    compressed. Rows no source refers to any more are pruned (`watch.snapshots.prune`)."""

    __tablename__ = "snapshot_contents"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # zlib-compressed UTF-8
    size: Mapped[int] = mapped_column(Integer)  # bytes before compression
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Moved by every run that reads this text again, so pruning never takes a text a run is
    # about to refer to.
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExecutionSource(Base):
    """One source a successful run read: the URL target and the hash of its text."""

    __tablename__ = "execution_sources"
    __table_args__ = (
        Index("ix_execution_sources_content_hash", "content_hash"),
        Index("ix_execution_sources_screenshot_hash", "screenshot_hash"),
    )

    execution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    selector: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str] = mapped_column(ForeignKey("snapshot_contents.hash"))
    # A PNG of the page as the browser showed it, stored as texts are (0010).
    screenshot_hash: Mapped[str | None] = mapped_column(ForeignKey("snapshot_contents.hash"))
