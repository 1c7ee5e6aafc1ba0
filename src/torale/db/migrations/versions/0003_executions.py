"""Executions, the deliveries outbox, and the page cache.

Executions move their owner's tasks_version too (triggers), because a task's response embeds
its last execution.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from torale.db.types import JSONType, UTCDateTime

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = sa.text("status IN ('pending', 'running')")
_SQLITE_TRIGGERS = {
    "executions_version_on_insert": (
        "CREATE TRIGGER executions_version_on_insert AFTER INSERT ON executions BEGIN "
        "UPDATE users SET tasks_version = tasks_version + 1 WHERE id = NEW.user_id; END"
    ),
    "executions_version_on_update": (
        "CREATE TRIGGER executions_version_on_update AFTER UPDATE ON executions BEGIN "
        "UPDATE users SET tasks_version = tasks_version + 1 WHERE id = NEW.user_id; END"
    ),
    "executions_version_on_delete": (
        "CREATE TRIGGER executions_version_on_delete AFTER DELETE ON executions BEGIN "
        "UPDATE users SET tasks_version = tasks_version + 1 WHERE id = OLD.user_id; END"
    ),
}


def upgrade() -> None:
    op.create_table(
        "executions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("condition_met", sa.Boolean(), nullable=True),
        sa.Column("change_summary", sa.Text(), nullable=True),
        sa.Column("result", JSONType, nullable=True),
        sa.Column("grounding_sources", JSONType, nullable=False),
        sa.Column("notification", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("usage", JSONType, nullable=False),
        sa.Column("evidence_fingerprint", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'success', 'failed', 'retrying', 'cancelled')",
            name=op.f("ck_executions_status"),
        ),
        sa.CheckConstraint("trigger IN ('schedule', 'manual')", name=op.f("ck_executions_trigger")),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_executions_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_executions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
    )
    op.create_index("ix_executions_status_created", "executions", ["status", "created_at"])
    op.create_index("ix_executions_task_created", "executions", ["task_id", "created_at"])
    op.create_index("ix_executions_user_created", "executions", ["user_id", "created_at"])
    op.create_index(
        "uq_executions_one_active_per_task",
        "executions",
        ["task_id"],
        unique=True,
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("channel_index", sa.Integer(), nullable=False),
        sa.Column("channel_type", sa.String(length=16), nullable=False),
        sa.Column("channel", JSONType, nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_deliveries_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_deliveries_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_deliveries_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "execution_id", "channel_index", name="uq_deliveries_execution_channel"
        ),
    )
    op.create_index(
        "ix_deliveries_status_next_attempt", "deliveries", ["status", "next_attempt_at"]
    )
    op.create_index("ix_deliveries_user_created", "deliveries", ["user_id", "created_at"])

    op.create_table(
        "pages",
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(length=512), nullable=True),
        sa.Column("last_modified", sa.String(length=128), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("url_hash", name=op.f("pk_pages")),
    )

    if op.get_bind().dialect.name == "sqlite":
        for create_trigger in _SQLITE_TRIGGERS.values():
            op.execute(create_trigger)
    else:
        # bump_tasks_version() (0002) uses NEW/OLD.user_id, which executions has too.
        op.execute(
            "CREATE TRIGGER executions_version AFTER INSERT OR UPDATE OR DELETE ON executions "
            "FOR EACH ROW EXECUTE FUNCTION bump_tasks_version()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS executions_version ON executions")
    op.drop_table("pages")
    op.drop_index("ix_deliveries_user_created", table_name="deliveries")
    op.drop_index("ix_deliveries_status_next_attempt", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("uq_executions_one_active_per_task", table_name="executions")
    op.drop_index("ix_executions_user_created", table_name="executions")
    op.drop_index("ix_executions_task_created", table_name="executions")
    op.drop_index("ix_executions_status_created", table_name="executions")
    op.drop_table("executions")
