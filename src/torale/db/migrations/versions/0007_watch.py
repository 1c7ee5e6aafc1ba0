"""Watching without a model: tasks.mode, rules and change filters; snapshots of what runs read.

Columns are added with ALTER TABLE (SQLite included), so the tasks table is not rebuilt and its
tasks_version triggers stay. Existing tasks keep deciding with a model (`mode` model).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from torale.db.types import JSONType, UTCDateTime

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("mode", sa.String(length=16), nullable=False, server_default="model")
    )
    op.add_column("tasks", sa.Column("rules", JSONType, nullable=True))
    op.add_column("tasks", sa.Column("change_options", JSONType, nullable=True))
    op.create_table(
        "snapshot_contents",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_snapshot_contents")),
    )
    op.create_table(
        "execution_sources",
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("selector", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_execution_sources_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["content_hash"],
            ["snapshot_contents.hash"],
            name=op.f("fk_execution_sources_content_hash_snapshot_contents"),
        ),
        sa.PrimaryKeyConstraint("execution_id", "position", name=op.f("pk_execution_sources")),
    )
    op.create_index(
        "ix_execution_sources_content_hash", "execution_sources", ["content_hash"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_execution_sources_content_hash", table_name="execution_sources")
    op.drop_table("execution_sources")
    op.drop_table("snapshot_contents")
    # SQLite drops a column in place since 3.35 (no table rebuild, the triggers stay).
    op.drop_column("tasks", "change_options")
    op.drop_column("tasks", "rules")
    op.drop_column("tasks", "mode")
