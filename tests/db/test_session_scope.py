"""session_scope when PostgreSQL drops the connection before the COMMIT is answered: a unit of
work that wrote may or may not have been saved (CommitOutcomeUnknownError, a 504); one that only
read has no COMMIT to lose (it reads in autocommit) and has what it read. Either way the pool
hands the next unit a live connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from torale.db.database import (
    CommitOutcomeUnknownError,
    create_engine,
    create_sessionmaker,
    database_unavailable,
    session_scope,
)


@pytest.fixture
async def engine(make_postgres_database: Callable[[], str]) -> AsyncIterator[AsyncEngine]:
    url = await asyncio.to_thread(make_postgres_database)
    made = create_engine(url, timeout=5)
    yield made
    await made.dispose()


async def lose_connection_before_commit(engine: AsyncEngine, *, writes: bool) -> None:
    """A unit of work whose connection the server ends after its last statement."""
    async with session_scope(create_sessionmaker(engine), writes=writes) as session:
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
        admin = await asyncpg.connect(
            engine.url.set(drivername="postgresql").render_as_string(False)
        )
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)  # the server has closed it


async def test_a_writing_unit_whose_commit_is_lost_may_have_been_saved(
    engine: AsyncEngine,
) -> None:
    with pytest.raises(CommitOutcomeUnknownError):
        await lose_connection_before_commit(engine, writes=True)
    async with session_scope(create_sessionmaker(engine)) as session:
        assert await session.scalar(text("SELECT 1")) == 1


async def test_a_reading_unit_has_no_commit_to_lose(engine: AsyncEngine) -> None:
    await lose_connection_before_commit(engine, writes=False)  # nothing raised: it had its rows
    async with session_scope(create_sessionmaker(engine), writes=False) as session:
        assert await session.scalar(text("SELECT 1")) == 1  # a new connection, not the dead one


async def test_a_failed_read_is_an_unavailable_database(engine: AsyncEngine) -> None:
    with pytest.raises(DBAPIError) as lost:
        async with session_scope(create_sessionmaker(engine), writes=False) as session:
            await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    assert database_unavailable(lost.value)
