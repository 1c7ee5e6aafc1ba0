"""Async engine and session factory from a database URL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside one writer; busy_timeout makes writers queue, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    if url.startswith("sqlite"):
        # Enough connections for the usual concurrency, so they are reused, not churned.
        engine = create_async_engine(url, echo=echo, pool_size=16, max_overflow=16)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True, pool_recycle=1800
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@contextlib.asynccontextmanager
async def session_scope(
    factory: async_sessionmaker[AsyncSession], write_lock: asyncio.Lock | None = None
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on error. Services never commit.

    With `write_lock` (SQLite), the unit of work holds it throughout: SQLite has one writer at a
    time, and writers queued on a lock resume at once, where writers left to SQLite's busy
    handler sleep in steps of up to 100 ms.
    """
    lock = write_lock if write_lock is not None else contextlib.nullcontext()
    async with lock, factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
