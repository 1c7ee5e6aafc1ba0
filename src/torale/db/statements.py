"""Statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import Base


async def insert_unless_conflict(
    session: AsyncSession, model: type[Base], values: dict[str, Any]
) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True when the row went in.

    Safe under concurrency without savepoints: whichever writer loses simply inserts nothing.
    """
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = await session.execute(insert(model).values(**values).on_conflict_do_nothing())
    return bool(getattr(result, "rowcount", 0))


async def upsert(
    session: AsyncSession, model: type[Base], values: dict[str, Any], *, key: str
) -> None:
    """INSERT … ON CONFLICT (key) DO UPDATE: the row ends up holding `values`."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(**values)
    changes = {name: statement.excluded[name] for name in values if name != key}
    await session.execute(statement.on_conflict_do_update(index_elements=[key], set_=changes))


async def try_exclusive(session: AsyncSession, lock_id: int) -> bool:
    """Whether this transaction is the only one doing the job `lock_id` names now.

    PostgreSQL: a transaction-scoped advisory lock, taken without waiting (False when another
    transaction holds it). SQLite has one writer at a time anyway: always True.
    """
    if session.bind is None or session.bind.dialect.name != "postgresql":
        return True
    taken = await session.scalar(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": lock_id})
    return bool(taken)
