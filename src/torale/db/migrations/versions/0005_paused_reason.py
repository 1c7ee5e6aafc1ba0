"""tasks.paused_reason: tasks paused by an admin's deactivation of their owner.

The column is added with ALTER TABLE (SQLite included), so the tasks table is not rebuilt and
its tasks_version triggers stay.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("paused_reason", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # SQLite drops a column in place since 3.35 (no table rebuild, the triggers stay).
    op.drop_column("tasks", "paused_reason")
