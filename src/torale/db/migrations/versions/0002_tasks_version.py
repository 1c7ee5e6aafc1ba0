"""users.tasks_version: a per-user counter every write to the user's tasks moves on.

Triggers keep it, so every writer (API, scheduler, workers in other processes) moves it in the
same transaction as its change. Caches of a user's task lists are keyed by it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_TRIGGERS = {
    "tasks_version_on_insert": (
        "CREATE TRIGGER tasks_version_on_insert AFTER INSERT ON tasks BEGIN "
        "UPDATE users SET tasks_version = tasks_version + 1 WHERE id = NEW.user_id; END"
    ),
    "tasks_version_on_update": (
        "CREATE TRIGGER tasks_version_on_update AFTER UPDATE ON tasks BEGIN "
        "UPDATE users SET tasks_version = tasks_version + 1 WHERE id = NEW.user_id; END"
    ),
    "tasks_version_on_delete": (
        "CREATE TRIGGER tasks_version_on_delete AFTER DELETE ON tasks BEGIN "
        "UPDATE users SET tasks_version = tasks_version + 1 WHERE id = OLD.user_id; END"
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("tasks_version", sa.BigInteger(), nullable=False, server_default="0")
        )
    if op.get_bind().dialect.name == "sqlite":
        for create_trigger in _SQLITE_TRIGGERS.values():
            op.execute(create_trigger)
    else:
        op.execute(
            """
            CREATE FUNCTION bump_tasks_version() RETURNS trigger AS $$
            BEGIN
                UPDATE users SET tasks_version = tasks_version + 1
                WHERE id = COALESCE(NEW.user_id, OLD.user_id);
                RETURN NULL;
            END
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER tasks_version AFTER INSERT OR UPDATE OR DELETE ON tasks "
            "FOR EACH ROW EXECUTE FUNCTION bump_tasks_version()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS tasks_version ON tasks")
        op.execute("DROP FUNCTION IF EXISTS bump_tasks_version()")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("tasks_version")
