"""Has anything a process's caches hold changed in the database? Caches that must be exact
across processes (who owns a key or a session, rendered pages) ask this instead of the database.

- SQLite: `PRAGMA data_version` on a connection of our own, read on every check (a few µs):
  SQLite moves it whenever any other connection, in this process or another, commits. While it
  stands still nothing changed; when it moves, everything cached is dropped.
- PostgreSQL: a connection of our own LISTENs to `torale_changes`, on which triggers (migration
  0008) send the id of the user whose rows changed, at commit, whoever wrote. A notification
  drops what is cached about that user. Notifications arrive a moment after the commit, so a
  unit of work of *this* process that wrote waits, after its commit, until the listener has
  heard everything committed before (`sync`: a marker NOTIFY of our own comes back after
  them, as PostgreSQL delivers notifications in commit order): a client that saw a write
  answered never gets a stale answer from the same process. While the listening connection is
  lost, or a marker does not come back in time, nothing is cached and everything cached is
  dropped; it reconnects by itself. Another process hears of a change when its notification
  arrives (well under a millisecond on a local server); a listener cut off without being told
  (a network partition) is noticed by its keep-alive marker within `KEEPALIVE_SECONDS` plus
  `MARKER_TIMEOUT_SECONDS`.
- Anything else: nothing is watched, so nothing may be cached (`caching` is False).

Caches subscribe a listener, called with the user whose rows changed, or None when anything may
have (and everything must go). `stamp` moves with every change a listener heard of: a cache
notes it before a read and keeps what it read only if it has not moved since (a change that
landed during the read would otherwise be filed under the old state).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.util import await_only
from sqlalchemy.util.concurrency import in_greenlet

logger = logging.getLogger("torale.db")

Listener = Callable[[uuid.UUID | None], None]
VersionListener = Callable[[uuid.UUID, int], None]
CHANNEL = "torale_changes"
APPLICATION_NAME = "torale change watch"  # the listening connection, in pg_stat_activity
KEEPALIVE_SECONDS = 2.0
MARKER_TIMEOUT_SECONDS = 2.0


def _read_only_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


class ChangeWatch:
    """Watches nothing: every cache that asks is told not to keep anything."""

    caching = False

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._version_listeners: list[VersionListener] = []
        self._stamps = itertools.count(1)
        self.stamp = next(self._stamps)
        self._marks: dict[uuid.UUID, int] = {}
        self._base_mark = self.stamp

    def subscribe(self, listener: Listener, moved: VersionListener | None = None) -> None:
        """`listener` hears of changes; `moved`, if given, of a user whose only change is a
        new tasks_version (otherwise `listener` hears of those too)."""
        self._listeners.append(listener)
        if moved is not None:
            self._version_listeners.append(moved)
        else:
            self._version_listeners.append(lambda user_id, _version: listener(user_id))

    async def start(self) -> None:
        """Begin watching (PostgreSQL connects and listens; a no-op elsewhere)."""

    def check(self) -> None:
        """Bring the watch up to date (SQLite reads data_version; a no-op elsewhere)."""

    async def sync(self) -> None:
        """Return once every change committed before the call has been heard (PostgreSQL)."""

    def mark(self, user_id: uuid.UUID) -> int:
        """A number that changes whenever the user's rows may have changed: part of the key of
        anything cached about them. Call `check` first."""
        return self._marks.get(user_id, self._base_mark)

    def changed(self, user_id: uuid.UUID | None) -> None:
        """The user's rows (None: any rows) changed: tell every cache."""
        self.stamp = next(self._stamps)
        if user_id is None:
            self._marks.clear()
            self._base_mark = self.stamp
        else:
            self._marks[user_id] = self.stamp
        for listener in self._listeners:
            listener(user_id)

    def moved(self, user_id: uuid.UUID, tasks_version: int) -> None:
        """The user's row changed in its tasks_version alone."""
        self.stamp = next(self._stamps)  # a read under way may have the old version
        for listener in self._version_listeners:
            listener(user_id, tasks_version)

    async def close(self) -> None:
        pass


class SqliteChangeWatch(ChangeWatch):
    """data_version on a read-only connection; its engine also serves the lookups' reads."""

    caching = True

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        url = make_url(str(engine.url.render_as_string(hide_password=False)))
        # Synchronous reads on the event-loop thread: a point read takes microseconds, a hop
        # through aiosqlite's thread far more, and in WAL mode readers never wait for writers.
        self.read_engine: Engine = create_engine(
            url.set(drivername="sqlite+pysqlite"), pool_size=2, max_overflow=4
        )
        event.listen(self.read_engine, "connect", _read_only_sqlite)
        self._watch: Any = None  # the DBAPI connection that reads PRAGMA data_version
        self._seen: int | None = None

    def check(self) -> None:
        if self._watch is None:
            self._watch = self.read_engine.raw_connection()
        version: int = self._watch.execute("PRAGMA data_version").fetchone()[0]
        if version != self._seen:
            self._seen = version
            self.changed(None)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self.read_engine.dispose()


# The PostgreSQL watch of each engine, for the sessions that commit through it.
_WATCHES: weakref.WeakKeyDictionary[Engine, PostgresChangeWatch] = weakref.WeakKeyDictionary()


class PostgresChangeWatch(ChangeWatch):
    """LISTEN torale_changes on a connection of its own, kept up by a background task."""

    def __init__(self, engine: AsyncEngine, timeout: float | None = None) -> None:
        super().__init__()
        self.caching = False  # until listening
        cargs, params = engine.sync_engine.dialect.create_connect_args(engine.url)
        self._connect_args: tuple[list[Any], dict[str, Any]] = (list(cargs), dict(params))
        self._timeout = timeout or 10.0
        self._sync_channel = "torale_sync_" + secrets.token_hex(8)  # heard by this process only
        self._markers = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._next: asyncio.Future[None] | None = None  # the marker waiters share, not yet sent
        self._sender: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost_event: asyncio.Event | None = None
        self.connections = 0  # listening connections made so far (tests, logs)
        _WATCHES[engine.sync_engine] = self

    async def start(self) -> None:
        self._lost_event = asyncio.Event()
        self._task = asyncio.create_task(self._keep_listening(), name="torale-change-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._lose()

    async def sync(self) -> None:
        if not self.caching or self._conn is None:
            return  # nothing cached: nothing can be stale
        try:
            await asyncio.shield(self._next_marker())
        except Exception:  # not heard in time: nothing cached may be trusted
            logger.warning("the database's change notifications stopped; caching paused")
            await self._lose()

    def _next_marker(self) -> asyncio.Future[None]:
        """The next marker to be sent: everyone who asks until it goes waits for the same one
        (like a group commit), and it goes when the one before has come back."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if self._sender is None or self._sender.done():
                self._sender = asyncio.create_task(self._send_markers())
        return self._next

    async def _send_markers(self) -> None:
        while self._next is not None:
            waiting, self._next = self._next, None
            conn = self._conn
            try:
                if conn is None:
                    raise ConnectionError("not listening")
                await self._marker(conn)
            except Exception as exc:
                waiting.set_exception(exc)
            else:
                waiting.set_result(None)

    async def _marker(self, conn: asyncpg.Connection) -> None:
        """NOTIFY our own channel and wait for it: everything committed before came first."""
        marker = str(next(self._markers))
        heard = asyncio.get_running_loop().create_future()
        self._waiting[marker] = heard
        try:
            async with asyncio.timeout(MARKER_TIMEOUT_SECONDS):
                await conn.execute(f"NOTIFY {self._sync_channel}, '{marker}'")
                await heard
        finally:
            self._waiting.pop(marker, None)

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        user, _, version = payload.partition(" ")
        try:
            user_id = uuid.UUID(user)
            tasks_version = int(version) if version else None
        except ValueError:
            self.changed(None)
            return
        if tasks_version is None:
            self.changed(user_id)
        else:
            self.moved(user_id, tasks_version)

    def _heard_marker(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        heard = self._waiting.get(payload)
        if heard is not None and not heard.done():
            heard.set_result(None)

    async def _listen(self) -> asyncpg.Connection:
        cargs, params = self._connect_args
        settings = {**params.get("server_settings", {}), "application_name": APPLICATION_NAME}
        conn: asyncpg.Connection = await asyncpg.connect(
            *cargs, **{**params, "timeout": self._timeout, "server_settings": settings}
        )
        try:
            await conn.add_listener(CHANNEL, self._heard)
            await conn.add_listener(self._sync_channel, self._heard_marker)
        except BaseException:
            await conn.close(timeout=1)
            raise
        lost = self._lost_event
        assert lost is not None
        conn.add_termination_listener(lambda _conn: lost.set())
        return conn

    async def _keep_listening(self) -> None:
        delay = 0.1
        while True:
            try:
                self._conn = await self._listen()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                logger.warning("cannot listen for database changes (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            self.connections += 1
            assert self._lost_event is not None
            self._lost_event.clear()
            # Heard from now on; whatever changed while nobody listened is unknown: forget all.
            self.caching = True
            self.changed(None)
            try:
                while not self._lost_event.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(KEEPALIVE_SECONDS):
                            await self._lost_event.wait()
                    if not self._lost_event.is_set():
                        await asyncio.shield(self._next_marker())
            except Exception as exc:  # a marker not heard: the connection is not to be trusted
                logger.warning("database change notifications lost (%s); reconnecting", exc)
            await self._lose()

    async def _lose(self) -> None:
        """Stop caching and forget everything cached; close the listening connection."""
        self.caching = False
        self.changed(None)
        conn, self._conn = self._conn, None
        if self._lost_event is not None:
            self._lost_event.set()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=1)


def watch_changes(engine: AsyncEngine, *, timeout: float | None = None) -> ChangeWatch:
    if engine.dialect.name == "sqlite":
        return SqliteChangeWatch(engine)
    if engine.dialect.name == "postgresql":
        return PostgresChangeWatch(engine, timeout)
    return ChangeWatch()


# --- units of work of this process that wrote: heard before their callers go on ---------------

_WROTE = "torale_wrote"


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: object) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if not session.info.pop(_WROTE, False):
        return
    watch = _WATCHES.get(session.get_bind())  # type: ignore[arg-type]
    if watch is not None and watch.caching and in_greenlet():
        await_only(watch.sync())


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_WROTE, None)
