"""The database: SQLAlchemy's async engine, sessions and units of work (`session_scope`).

In Torale's own names "engine" is the run engine (`torale.engine`); the database is `database`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import aiosqlite
import orjson
from sqlalchemy import event, make_url
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_only

# A pooled PostgreSQL connection idle this long is pinged before it is handed out.
PING_IDLE_SECONDS = 1.0
# A statement that finds SQLite locked by another process waits this long (off the loop).
BUSY_WAIT_MS = 10_000
POOL_SIZE = 20  # PostgreSQL connections a process keeps (and up to 10 more in a burst)


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
    # WAL lets readers run beside one writer. busy_timeout 0 first: a statement that finds the
    # database locked (by another process) waits off the event loop (`_InlineSqlite`).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Ping a connection that sat idle before handing it out; a dead one is replaced.

    SQLAlchemy's `pool_pre_ping` pings every checkout, in a transaction of its own: three
    round trips before each unit of work. A connection used a moment ago is alive; one that
    idled (through a restart of the database, say) gets one round trip. A connection that dies
    in use fails its request (503) and makes the pool drop every connection older than it.
    """
    if dbapi_connection.driver_connection.is_closed():  # the server ended it: known locally
        raise DisconnectionError("the pooled connection was closed")
    since = record.info.get("idle_since")
    if since is None or time.monotonic() - since < PING_IDLE_SECONDS:
        return
    try:
        await_only(dbapi_connection.driver_connection.fetchrow(";"))
    except Exception as exc:
        raise DisconnectionError("the pooled connection did not answer a ping") from exc


def json_loads(text: str | bytes) -> Any:
    """JSON columns as read: orjson (a page of tasks decodes six JSON columns a row, ≈ 4x
    faster than `json.loads`), and `json.loads` for what orjson refuses (an integer beyond
    64 bits), so that every stored value reads back as before."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def create_engine(url: str, *, echo: bool = False, timeout: float | None = None) -> AsyncEngine:
    """`timeout` (PostgreSQL): seconds to connect and for each statement, so that requests
    fail fast (503) rather than hang while the database is unreachable. Migrations pass none."""
    if url.startswith("sqlite"):
        # Enough connections for the usual concurrency, so they are reused, not churned.
        parsed = make_url(url)
        engine = create_async_engine(
            parsed,
            echo=echo,
            async_creator=_sqlite_connect(parsed, parsed.get_dialect()()),
            pool_size=16,
            max_overflow=16,
            json_deserializer=json_loads,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    connect_args = {"timeout": timeout, "command_timeout": timeout} if timeout else {}
    engine = create_async_engine(
        url,
        echo=echo,
        # Connections beyond pool_size are closed when returned: under load they would be
        # opened and closed (TLS handshake included) again and again. Enough are kept for the
        # requests one process has in flight; the overflow absorbs bursts.
        pool_size=POOL_SIZE,
        max_overflow=10,
        pool_timeout=timeout or 30,
        pool_recycle=1800,
        connect_args=connect_args,
        json_deserializer=json_loads,
    )
    event.listen(engine.sync_engine, "checkin", _checked_in)
    event.listen(engine.sync_engine, "checkout", _ping_if_idle)
    return engine


class _InlineSqlite(aiosqlite.Connection):
    """aiosqlite's connection with every call made at once, on the event loop's thread.

    aiosqlite hands each call to a thread of the connection's own and wakes the event loop
    with the answer: two thread switches per call, several calls per statement, which cost
    more than a point read, a page of tasks or a small write itself. Both engines' connections
    run inline (the auth lookup's reads do too: auth/lookup.py). Nothing waits on the loop's
    thread: in WAL mode a reader never waits for a writer, the process's writers queue on
    its write lock (`session_scope`), and the connections' busy timeout is 0, so a statement
    that finds the database locked by another process (an operator command, a migration) is
    refused at once and run again on a thread, where it waits up to `BUSY_WAIT_MS` as
    aiosqlite's would, while the event loop goes on."""

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()  # no worker thread

    async def _connect(self) -> aiosqlite.Connection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            # A refused statement did nothing (SQLite's statements are atomic): run it again.
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
        return await self._wait_for_lock(self._connection, fn, *args, **kwargs)

    @staticmethod
    async def _wait_for_lock(
        connection: sqlite3.Connection, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        connection.execute(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")
        call = asyncio.get_running_loop().run_in_executor(
            None, functools.partial(fn, *args, **kwargs)
        )
        cancelled = False
        try:
            while True:
                try:
                    # A thread cannot be stopped: the connection is the thread's until the
                    # call returns, so a cancellation waits for it, then goes on.
                    result = await asyncio.shield(call)
                    break
                except asyncio.CancelledError:
                    if call.done():
                        raise
                    cancelled = True
            if cancelled:
                raise asyncio.CancelledError
            return result
        finally:
            connection.execute("PRAGMA busy_timeout=0")

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _sqlite_connect(engine_url: URL, dialect: Dialect) -> Callable[[], Any]:
    """An `async_creator` for SQLAlchemy: `_InlineSqlite` connections to the URL's file."""
    cargs, params = dialect.create_connect_args(engine_url)
    arguments: dict[str, Any] = dict(params)

    def connector() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(str(cargs[0]), **arguments)
        return connection

    async def connect() -> aiosqlite.Connection:
        return await _InlineSqlite(connector, 64)

    return connect


def _sqlite_reader_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")  # see _InlineSqlite
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _inline_sqlite_reader(engine: AsyncEngine) -> AsyncEngine:
    reader = create_async_engine(
        engine.url,
        async_creator=_sqlite_connect(engine.url, engine.sync_engine.dialect),
        pool_size=16,
        max_overflow=16,
        json_deserializer=json_loads,
    )
    event.listen(reader.sync_engine, "connect", _sqlite_reader_on_connect)
    return reader


_READERS: weakref.WeakKeyDictionary[Any, AsyncEngine] = weakref.WeakKeyDictionary()


def reading(engine: AsyncEngine) -> AsyncEngine:
    """The engine for units of work that only read. PostgreSQL: the same pool in autocommit
    (a read is one round trip per statement, with no BEGIN and COMMIT around it; at READ
    COMMITTED, a transaction gives a reader nothing more, each statement sees the commits
    before it either way). SQLite: read-only connections that run statements inline on the
    event loop's thread (`_InlineSqlite`)."""
    if engine.dialect.name not in ("postgresql", "sqlite"):
        return engine
    reader = _READERS.get(engine.sync_engine)
    if reader is None:
        if engine.dialect.name == "postgresql":
            reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            reader = _inline_sqlite_reader(engine)
        _READERS[engine.sync_engine] = reader
    return reader


async def dispose(engine: AsyncEngine) -> None:
    """Close the engine's connections, and those of its `reading` engine."""
    reader = _READERS.pop(engine.sync_engine, None)
    if reader is not None and reader.sync_engine is not engine.sync_engine:
        await reader.dispose()
    await engine.dispose()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@contextlib.asynccontextmanager
async def session_scope(
    factory: async_sessionmaker[AsyncSession],
    write_lock: asyncio.Lock | None = None,
    *,
    writes: bool = True,
    reader: bool | None = None,
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on error. Services never commit. When the
    database is lost during the commit of a unit that `writes`, CommitOutcomeUnknownError says so.
    A unit that does not write runs on the `reading` engine (autocommit on PostgreSQL,
    read-only inline connections on SQLite), unless `reader=False` (a unit that may write
    after all).

    With `write_lock` (SQLite), the unit of work holds it throughout: SQLite has one writer at a
    time, and writers queued on a lock resume at once, where writers left to SQLite's busy
    handler sleep in steps of up to 100 ms.
    """
    lock = write_lock if write_lock is not None else contextlib.nullcontext()
    bind = factory.kw.get("bind")
    use_reader = not writes if reader is None else reader
    options = {"bind": reading(bind)} if use_reader and bind is not None else {}
    async with lock, factory(**options) as session:
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
