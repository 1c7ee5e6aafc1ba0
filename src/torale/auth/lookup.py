"""Who owns an API key: looked up on every authenticated request, so kept lean.

The lookup skips the ORM session and reads through SQLAlchemy Core. On PostgreSQL it is one
indexed query on the async engine. On SQLite it runs on a synchronous read-only connection on
the event-loop thread (a point read takes microseconds; a hop through aiosqlite's thread costs
far more, and in WAL mode readers never wait for writers), and answers are cached in memory,
validated by `PRAGMA data_version`: SQLite changes that number whenever any other connection,
in this process or another, commits. While it stands still, nothing in the database changed,
so a cached owner (with its role, active flag and tasks_version) is exactly what a query would
return; revocations and deactivations still take effect on the next request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from torale.db.models import ApiKey, User


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    """The caller, as read at authentication (not an ORM object: nothing lazy, no session)."""

    id: uuid.UUID
    email: str | None
    first_name: str | None
    role: str
    is_active: bool
    created_at: datetime
    clerk_user_id: str | None
    tasks_version: int

    @classmethod
    def from_user(cls, user: User) -> AuthenticatedUser:
        return cls(
            id=user.id,
            email=user.email,
            first_name=user.first_name,
            role=user.role,
            is_active=user.is_active,
            created_at=user.created_at,
            clerk_user_id=user.clerk_user_id,
            tasks_version=user.tasks_version,
        )


@dataclass(frozen=True, slots=True)
class KeyOwner:
    key_id: uuid.UUID
    revoked: bool
    user: AuthenticatedUser


_BY_KEY_HASH = (
    select(
        ApiKey.id,
        ApiKey.revoked_at,
        User.id,
        User.email,
        User.first_name,
        User.role,
        User.is_active,
        User.created_at,
        User.clerk_user_id,
        User.tasks_version,
    )
    .join(User, User.id == ApiKey.user_id)
    .where(ApiKey.key_hash == bindparam("key_hash"))
)


def _owner(row: Any) -> KeyOwner | None:
    if row is None:
        return None
    key_id, revoked_at, *user = row
    return KeyOwner(key_id=key_id, revoked=revoked_at is not None, user=AuthenticatedUser(*user))


def _read_only_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


_MAX_CACHED = 10_000


class KeyLookup:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sync: Engine | None = None
        self._watch: Any = None  # DBAPI connection that reads PRAGMA data_version
        self._seen_version: int | None = None
        self._cache: dict[str, KeyOwner] = {}
        if engine.dialect.name == "sqlite":
            url = make_url(str(engine.url.render_as_string(hide_password=False)))
            self._sync = create_engine(
                url.set(drivername="sqlite+pysqlite"), pool_size=2, max_overflow=4
            )
            event.listen(self._sync, "connect", _read_only_sqlite)

    async def find(self, key_hash: str) -> KeyOwner | None:
        params = {"key_hash": key_hash}
        if self._sync is None:
            async with self._engine.connect() as conn:
                return _owner((await conn.execute(_BY_KEY_HASH, params)).first())
        version = self._data_version()
        if version != self._seen_version or len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
            self._seen_version = version
        owner = self._cache.get(key_hash)
        if owner is None:
            # Read after the version: the row is at least as new as the version it is filed
            # under, and any later commit moves the version and drops it.
            with self._sync.connect() as conn:
                owner = _owner(conn.execute(_BY_KEY_HASH, params).first())
            if owner is not None:
                self._cache[key_hash] = owner  # unknown keys are not cached
        return owner

    def _data_version(self) -> int:
        assert self._sync is not None
        if self._watch is None:
            self._watch = self._sync.raw_connection()
        value: int = self._watch.execute("PRAGMA data_version").fetchone()[0]
        return value

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._sync is not None:
            self._sync.dispose()
