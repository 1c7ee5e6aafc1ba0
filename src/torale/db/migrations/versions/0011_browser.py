"""Reading pages with a browser: tasks.render and tasks.screenshot; a screenshot per source.

Columns are added with ALTER TABLE (SQLite included), so the tasks table is not rebuilt and its
tasks_version triggers stay. Existing tasks keep reading pages plainly.

Revision ID: 0011
Revises: 0010
Create Date: 2027-01-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("render", sa.String(length=16), nullable=False, server_default="plain")
    )
    op.add_column(
        "tasks", sa.Column("screenshot", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    fk = op.f("fk_execution_sources_screenshot_hash_snapshot_contents")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a reference only with the column, inline (Alembic would ALTER it in).
        op.execute(
            "ALTER TABLE execution_sources ADD COLUMN screenshot_hash VARCHAR(64) "
            f"CONSTRAINT {fk} REFERENCES snapshot_contents (hash)"
        )
    else:
        op.add_column(
            "execution_sources", sa.Column("screenshot_hash", sa.String(length=64), nullable=True)
        )
        op.create_foreign_key(
            fk, "execution_sources", "snapshot_contents", ["screenshot_hash"], ["hash"]
        )
    op.create_index(
        "ix_execution_sources_screenshot_hash",
        "execution_sources",
        ["screenshot_hash"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_execution_sources_screenshot_hash", table_name="execution_sources")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite does not drop a column that references another table in place: rebuild this
        # one (it has no triggers; the tasks table keeps its own).
        with op.batch_alter_table("execution_sources") as batch:
            batch.drop_column("screenshot_hash")
    else:
        op.drop_constraint(
            op.f("fk_execution_sources_screenshot_hash_snapshot_contents"),
            "execution_sources",
            type_="foreignkey",
        )
        op.drop_column("execution_sources", "screenshot_hash")
    # SQLite drops these in place since 3.35 (no table rebuild, the triggers stay).
    op.drop_column("tasks", "screenshot")
    op.drop_column("tasks", "render")
