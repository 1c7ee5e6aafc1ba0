"""The engines reads run on (db/database.py `reading`): SQLite reads inline on the event loop's
thread through read-only connections, and writes inline too, waiting for another process's
write lock on a thread, never on the loop; PostgreSQL reads in autocommit, one round trip per
statement, while a unit that writes keeps its transaction; a pooled connection the server
closed is never handed out."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

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


async def _ticking(ticks: list[float]) -> None:
    while True:
        await asyncio.sleep(0.01)
        ticks.append(asyncio.get_running_loop().time())


async def _scratch_rows(engine: AsyncEngine) -> int:
    async with session_scope(create_sessionmaker(engine), writes=False) as session:
        return int(await session.scalar(text("SELECT count(*) FROM scratch")) or 0)


async def test_sqlite_writes_run_inline_and_wait_for_another_process_off_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "torale.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(url)
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    # Another process's write transaction: SQLite's write lock is the database's, not a
    # connection's, so another connection holding it is what another process would be.
    holder = sqlite3.connect(path, isolation_level=None)
    ticks: list[float] = []
    ticker = asyncio.create_task(_ticking(ticks))

    async def write(value: int) -> None:
        async with session_scope(sessions) as session:
            await session.execute(text("INSERT INTO scratch (x) VALUES (:x)"), {"x": value})

    try:
        async with session_scope(sessions) as session:
            await session.execute(text("CREATE TABLE scratch (x INTEGER)"))
            raw = await (await session.connection()).get_raw_connection()
            assert isinstance(raw.driver_connection, _InlineSqlite)
            assert raw.driver_connection._thread.ident is None  # its thread never started
        holder.execute("BEGIN IMMEDIATE")
        writing = asyncio.create_task(write(1))
        await asyncio.sleep(0.5)
        assert not writing.done()  # waiting for the lock...
        assert len(ticks) >= 20  # ...while the event loop went on
        holder.execute("COMMIT")
        await asyncio.wait_for(writing, 10)
        assert await _scratch_rows(engine) == 1

        # Cancelled while it waits: the call on the thread cannot be stopped, so the
        # cancellation waits for it, and the unit of work is rolled back.
        holder.execute("BEGIN IMMEDIATE")
        writing = asyncio.create_task(write(2))
        await asyncio.sleep(0.3)
        writing.cancel()
        await asyncio.sleep(0.3)
        assert not writing.done()
        holder.execute("COMMIT")
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(writing, 10)
        assert await _scratch_rows(engine) == 1
        await write(3)  # the connection went back to the pool in working order
        assert await _scratch_rows(engine) == 2
    finally:
        ticker.cancel()
        holder.close()
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
