"""PostgreSQL tells every API process whose rows changed (NOTIFY torale_changes, user id).

The processes cache who owns a key or a session and rendered pages (db/changes.py); these
triggers make every committed change of what those caches hold reach them, whoever wrote it: a
user's row (its tasks_version moves with every write to its tasks and executions, by the
0002/0003 triggers), a key's revocation, a session's end or use, a delivery or delivery attempt.
pg_notify takes no row lock (the one lock order is untouched) and is sent at commit only.
SQLite needs none of this: its processes read `PRAGMA data_version`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (trigger, table, events): the user id is the row's `user_id` (`id` for users).
_TRIGGERS = (
    ("users_changed", "users", "UPDATE OR DELETE"),
    # last_used_at is written in batches every 30 s and is cached nowhere: not a change here.
    ("api_keys_changed", "api_keys", "UPDATE OF user_id, key_hash, revoked_at OR DELETE"),
    ("web_sessions_changed", "web_sessions", "UPDATE OR DELETE"),
    ("deliveries_changed", "deliveries", "INSERT OR UPDATE OR DELETE"),
    ("delivery_attempts_changed", "delivery_attempts", "INSERT OR UPDATE OR DELETE"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    # A user row whose only change is tasks_version (a write to one of its tasks or runs: the
    # most common change by far) says so with the new version ("<id> <version>"), so that the
    # processes move their cached owner's version instead of reading it again.
    op.execute(
        """
        CREATE FUNCTION notify_user_changed() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'UPDATE'
               AND to_jsonb(NEW) - 'tasks_version' = to_jsonb(OLD) - 'tasks_version' THEN
                PERFORM pg_notify('torale_changes', NEW.id::text || ' ' || NEW.tasks_version);
            ELSE
                PERFORM pg_notify('torale_changes', COALESCE(NEW.id, OLD.id)::text);
            END IF;
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE FUNCTION notify_owner_changed() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('torale_changes', COALESCE(NEW.user_id, OLD.user_id)::text);
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql
        """
    )
    for name, table, events in _TRIGGERS:
        function = "notify_user_changed" if table == "users" else "notify_owner_changed"
        op.execute(
            f"CREATE TRIGGER {name} AFTER {events} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for name, table, _ in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS notify_user_changed()")
    op.execute("DROP FUNCTION IF EXISTS notify_owner_changed()")
