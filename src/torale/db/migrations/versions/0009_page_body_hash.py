"""pages.body_hash: the hash of the body a page cache entry was read from.

A page answered 200 with the bytes it had at the last read is not extracted again: its text is
the cached one (`engine.fetch`). Existing entries have no hash and are read in full once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pages", sa.Column("body_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # SQLite drops a column in place since 3.35 (no table rebuild).
    op.drop_column("pages", "body_hash")
