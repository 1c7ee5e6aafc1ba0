"""tasks.selector_misses: how many runs in a row found a selector matching nothing (the user is
told once when it reaches TORALE_SELECTOR_MISSES_TO_NOTIFY; a run that reads every target, or
new urls, start it again from 0).

The column is added with ALTER TABLE (SQLite included), so the tasks table is not rebuilt and
its tasks_version triggers stay.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column("selector_misses", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    # SQLite drops a column in place since 3.35 (no table rebuild, the triggers stay).
    op.drop_column("tasks", "selector_misses")
