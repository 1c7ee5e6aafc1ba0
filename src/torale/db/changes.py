"""Has anything a process's caches hold changed in the database? Caches that must be exact
across processes (who owns a key or a session, rendered pages) ask this instead of the database.

- SQLite: `PRAGMA data_version` on a connection of our own, read on every check (a few µs):
  SQLite moves it whenever any other connection, in this process or another, commits. While it
  stands still nothing changed; when it moves, everything cached is dropped.
- Other databases: nothing is watched here, so nothing may be cached (`caching` is False).

Caches subscribe a listener, called with the user whose rows changed, or None when anything may
have (and everything must go). `stamp` moves with every change a listener heard of: a cache
notes it before a read and keeps what it read only if it has not moved since (a change that
landed during the read would otherwise be filed under the old state).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

Listener = Callable[[uuid.UUID | None], None]


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
        self._stamps = itertools.count(1)
        self.stamp = next(self._stamps)
        self._marks: dict[uuid.UUID, int] = {}
        self._base_mark = self.stamp

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def check(self) -> None:
        """Bring the watch up to date (SQLite reads data_version; a no-op elsewhere)."""

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

    def close(self) -> None:
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

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self.read_engine.dispose()


def watch_changes(engine: AsyncEngine) -> ChangeWatch:
    if engine.dialect.name == "sqlite":
        return SqliteChangeWatch(engine)
    return ChangeWatch()
