"""The engines reads run on (db/database.py `reading`): SQLite reads inline on the event loop's
thread through read-only connections; PostgreSQL reads in autocommit, one round trip per
statement, while a unit that writes keeps its transaction; a pooled connection the server
closed is never handed out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.fixtures.pg_wire import PgWireCounter
from torale.db import migrate
from torale.db.database import (
    _InlineSqlite,
    create_engine,
    create_sessionmaker,
    dispose,
    reading,
    session_scope,
)


async def test_sqlite_reads_run_inline_and_cannot_write(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'torale.db'}"
    await migrate.upgrade(url)
    engine = create_engine(url)
    try:
        async with session_scope(create_sessionmaker(engine), writes=False) as session:
            assert await session.scalar(text("SELECT count(*) FROM users")) == 0
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            assert isinstance(raw.driver_connection, _InlineSqlite)
            assert raw.driver_connection._thread.ident is None  # its thread never started
        with pytest.raises(OperationalError, match="readonly"):
            async with reading(engine).begin() as conn:
                await conn.execute(text("INSERT INTO users (id, email) VALUES ('x', 'x')"))
        async with session_scope(create_sessionmaker(engine)) as session:  # writes as before
            await session.execute(
                text("CREATE TABLE scratch (x INTEGER)"),
            )
    finally:
        await dispose(engine)


@pytest.mark.postgres
async def test_postgres_reads_in_autocommit_and_writes_in_a_transaction(
    make_postgres_database: Callable[[], str],
) -> None:
    url = await asyncio.to_thread(make_postgres_database)
    with PgWireCounter("127.0.0.1", 5432) as counter:
        engine = create_engine(counter.url(url), timeout=5)
        sessions = create_sessionmaker(engine)
        try:
            async with session_scope(sessions, writes=False) as session:
                await session.scalar(text("SELECT 1"))  # the connection is made and kept
            counter.reset()
            async with session_scope(sessions, writes=False) as session:
                await session.scalar(text("SELECT 1"))
                await session.scalar(text("SELECT 2"))
            read = counter.reset()
            assert (read.round_trips, read.statements) == (2, 2)  # no BEGIN, no COMMIT
            async with session_scope(sessions) as session:
                await session.execute(text("CREATE TEMP TABLE t (x int)"))
            wrote = counter.reset()
            assert wrote.trace[0].startswith("BEGIN")
            assert wrote.trace[-1].startswith("COMMIT")
            assert wrote.round_trips == 3
        finally:
            await dispose(engine)
