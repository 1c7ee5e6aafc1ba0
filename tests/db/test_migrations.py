"""Alembic migrations are the only way the schema is made: they run both ways on both databases,
match the ORM models exactly, and are safe when several processes start at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from torale.db import migrate
from torale.db.database import create_engine
from torale.db.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    make: Callable[[], str] = request.getfixturevalue("make_postgres_database")
    return make()


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


async def test_upgrade_downgrade_upgrade(empty_database: str) -> None:
    await migrate.upgrade(empty_database)
    assert await migrate.current_revision(empty_database) == migrate.head_revision()
    engine = create_async_engine(empty_database)
    try:
        async with engine.connect() as conn:
            assert {"users", "api_keys", "tasks", "alembic_version"} <= await conn.run_sync(_tables)
            assert await conn.run_sync(_diff) == []  # models and migrations agree
        await migrate.downgrade(empty_database, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}
        await migrate.upgrade(empty_database)
        await migrate.upgrade(empty_database)  # idempotent
        assert await migrate.current_revision(empty_database) == migrate.head_revision()
    finally:
        await engine.dispose()


async def test_concurrent_upgrades_are_safe(empty_database: str) -> None:
    await asyncio.gather(*(migrate.upgrade(empty_database) for _ in range(4)))
    assert await migrate.current_revision(empty_database) == migrate.head_revision()


async def test_indexes_for_list_and_lookup_queries(empty_database: str) -> None:
    await migrate.upgrade(empty_database)
    engine = create_async_engine(empty_database)

    def indexes(conn: Connection) -> dict[str, list[list[str | None]]]:
        inspector = inspect(conn)
        found: dict[str, list[list[str | None]]] = {}
        for table in ("tasks", "api_keys", "users"):
            found[table] = [list(i["column_names"]) for i in inspector.get_indexes(table)]
            found[table] += [
                list(u["column_names"]) for u in inspector.get_unique_constraints(table)
            ]
        return found

    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(indexes)
    finally:
        await engine.dispose()
    assert ["user_id", "created_at"] in found["tasks"]
    assert ["user_id", "state", "created_at"] in found["tasks"]
    assert ["state", "next_run"] in found["tasks"]
    assert ["key_hash"] in found["api_keys"]
    assert ["user_id", "created_at"] in found["api_keys"]
    assert ["email"] in found["users"]
    assert ["clerk_user_id"] in found["users"]


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}"
    await migrate.upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_a_failed_sqlite_migration_leaves_nothing(tmp_path: Path) -> None:
    # A table in the way makes the first migration fail half way; nothing may remain of it.
    url = f"sqlite+aiosqlite:///{tmp_path / 'partial.db'}"
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE tasks (x INTEGER)"))
    with pytest.raises(Exception, match="already exists"):
        await migrate.upgrade(url)
    async with engine.connect() as conn:
        assert await conn.run_sync(_tables) == {"tasks"}
    await engine.dispose()
