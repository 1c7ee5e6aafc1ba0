"""Users, API keys and tasks.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from torale.db.types import JSONType, UTCDateTime

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("first_name", sa.String(length=200), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("clerk_user_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("role IN ('user', 'admin')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("clerk_user_id", name=op.f("uq_users_clerk_user_id")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_prefix", sa.String(length=12), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_api_keys_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index("ix_api_keys_user_created", "api_keys", ["user_id", "created_at"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("search_query", sa.Text(), nullable=False),
        sa.Column("condition_description", sa.Text(), nullable=False),
        sa.Column("urls", JSONType, nullable=False),
        sa.Column("schedule", sa.String(length=120), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("notify_behavior", sa.String(length=16), nullable=False),
        sa.Column("notifications", JSONType, nullable=False),
        sa.Column("config", JSONType, nullable=False),
        sa.Column("executor_type", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("condition_met", sa.Boolean(), nullable=False),
        sa.Column("last_known_state", JSONType, nullable=True),
        sa.Column("last_notified_at", UTCDateTime(), nullable=True),
        sa.Column("next_run", UTCDateTime(), nullable=True),
        sa.Column("last_execution_id", sa.Uuid(), nullable=True),
        sa.Column("context", JSONType, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("state_changed_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "notify_behavior IN ('once', 'always', 'track_state')",
            name=op.f("ck_tasks_notify_behavior"),
        ),
        sa.CheckConstraint(
            "state IN ('active', 'paused', 'completed')", name=op.f("ck_tasks_state")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_tasks_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index("ix_tasks_state_next_run", "tasks", ["state", "next_run"])
    op.create_index("ix_tasks_user_created", "tasks", ["user_id", "created_at"])
    op.create_index("ix_tasks_user_state_created", "tasks", ["user_id", "state", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_user_state_created", table_name="tasks")
    op.drop_index("ix_tasks_user_created", table_name="tasks")
    op.drop_index("ix_tasks_state_next_run", table_name="tasks")
    op.drop_table("tasks")
    op.drop_index("ix_api_keys_user_created", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("users")
