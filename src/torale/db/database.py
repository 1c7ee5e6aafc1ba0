"""The database: SQLAlchemy's async engine, sessions and units of work (`session_scope`).

In Torale's own names "engine" is the run engine (`torale.engine`); the database is `database`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


class CommitOutcomeUnknownError(Exception):
    """The database went away while a commit was on its way: it may or may not have happened."""

    detail = (
        "The database stopped answering while this change was being saved: it may or may not "
        "have been saved. Check before sending it again."
    )


def database_unavailable(exc: BaseException) -> bool:
    """Is this a failure to reach the database (as opposed to a bug in a statement)?"""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError | ConnectionError):
        return True
    if isinstance(exc, TimeoutError):  # TORALE_DATABASE_TIMEOUT_SECONDS ran out
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    # PostgreSQL's connection-exception, insufficient-resources and operator-intervention
    # classes: "database is not accepting connections", "too many clients", "shutting down".
    code = str(getattr(exc.orig, "sqlstate", None) or "")
    return code[:2] in ("08", "53") or code.startswith("57P") or _refused_at_connect(exc)


def _refused_at_connect(exc: DBAPIError) -> bool:
    """asyncpg reports a database that refuses connections (ALLOW_CONNECTIONS false) as 55000,
    a class shared with statement errors; at connect, the error carries no statement."""
    return exc.statement is None and getattr(exc.orig, "sqlstate", None) == "55000"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside one writer; busy_timeout makes writers queue, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str, *, echo: bool = False, timeout: float | None = None) -> AsyncEngine:
    """`timeout` (PostgreSQL): seconds to connect and for each statement, so that requests
    fail fast (503) rather than hang while the database is unreachable. Migrations pass none."""
    if url.startswith("sqlite"):
        # Enough connections for the usual concurrency, so they are reused, not churned.
        engine = create_async_engine(url, echo=echo, pool_size=16, max_overflow=16)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    connect_args = {"timeout": timeout, "command_timeout": timeout} if timeout else {}
    return create_async_engine(
        url,
        echo=echo,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@contextlib.asynccontextmanager
async def session_scope(
    factory: async_sessionmaker[AsyncSession],
    write_lock: asyncio.Lock | None = None,
    *,
    writes: bool = True,
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on error. Services never commit. When the
    database is lost during the commit of a unit that `writes`, CommitOutcomeUnknownError says so.

    With `write_lock` (SQLite), the unit of work holds it throughout: SQLite has one writer at a
    time, and writers queued on a lock resume at once, where writers left to SQLite's busy
    handler sleep in steps of up to 100 ms.
    """
    lock = write_lock if write_lock is not None else contextlib.nullcontext()
    async with lock, factory() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        try:
            await session.commit()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await session.rollback()
            # PostgreSQL may have received the COMMIT before the connection went; SQLite
            # commits in process, so a failed commit there did not happen. A unit that only
            # read has nothing to lose: it fails as the database being unavailable (503).
            if (
                writes
                and database_unavailable(exc)
                and session.sync_session.get_bind().dialect.name != "sqlite"
            ):
                raise CommitOutcomeUnknownError(str(exc)) from exc
            raise
