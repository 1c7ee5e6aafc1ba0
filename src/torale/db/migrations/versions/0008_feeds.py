"""Atom feeds: a per-user feed token, kept only as a keyed hash (like API keys and sessions).

Columns are added with ALTER TABLE (SQLite included), so the users table is not rebuilt.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from torale.db.types import UTCDateTime

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("feed_token_hash", sa.String(length=64), nullable=True))
    op.add_column("users", sa.Column("feed_token_created_at", UTCDateTime(), nullable=True))
    op.create_index("uq_users_feed_token_hash", "users", ["feed_token_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_feed_token_hash", table_name="users")
    # SQLite drops a column in place since 3.35 (no table rebuild).
    op.drop_column("users", "feed_token_created_at")
    op.drop_column("users", "feed_token_hash")
