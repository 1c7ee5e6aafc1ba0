"""Who owns an API key or a browser session: looked up on every authenticated request, so kept
lean.

The lookups skip the ORM session and read through SQLAlchemy Core. Answers are cached in memory
for as long as the database's change watch (`db.changes`) says nothing changed: on SQLite that is
`PRAGMA data_version`, which moves whenever any other connection, in this process or another,
commits, and the reads themselves run on a synchronous read-only connection on the event-loop
thread; on PostgreSQL it is LISTEN/NOTIFY, and a read is one autocommit query. A cached owner
(with its role, active flag and tasks_version) is therefore exactly what a query would return;
revocations, sign-outs and deactivations take effect on the next request. Where nothing is
watched, every lookup is one indexed query.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Executable, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from torale.db.changes import ChangeWatch, SqliteChangeWatch
from torale.db.database import reading
from torale.db.models import ApiKey, User, WebSession


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


_USER_COLUMNS = (
    User.id,
    User.email,
    User.first_name,
    User.role,
    User.is_active,
    User.created_at,
    User.clerk_user_id,
    User.tasks_version,
)


@dataclass(frozen=True, slots=True)
class KeyOwner:
    key_id: uuid.UUID
    revoked: bool
    user: AuthenticatedUser


@dataclass(frozen=True, slots=True)
class SessionOwner:
    """A browser session as stored (whether it is still alive is `auth.sessions`' rule)."""

    id_hash: str
    last_seen_at: datetime
    expires_at: datetime
    user: AuthenticatedUser


_BY_KEY_HASH = (
    select(ApiKey.id, ApiKey.revoked_at, *_USER_COLUMNS)
    .join(User, User.id == ApiKey.user_id)
    .where(ApiKey.key_hash == bindparam("key"))
)
_BY_SESSION_HASH = (
    select(WebSession.last_seen_at, WebSession.expires_at, *_USER_COLUMNS)
    .join(User, User.id == WebSession.user_id)
    .where(WebSession.id_hash == bindparam("key"))
)

_MAX_CACHED = 10_000
T = TypeVar("T", KeyOwner, SessionOwner)


class _CachedLookup(Generic[T]):
    """One indexed read by a hash, cached while the change watch allows."""

    _statement: Executable

    def __init__(self, engine: AsyncEngine, changes: ChangeWatch) -> None:
        self._engine = reading(engine)
        self._changes = changes
        self._cache: dict[str, T] = {}
        self._by_user: dict[uuid.UUID, set[str]] = {}
        changes.subscribe(self._changed, self._moved)

    def _owner(self, key: str, row: Any) -> T:
        raise NotImplementedError

    async def find(self, key: str) -> T | None:
        changes = self._changes
        changes.check()
        owner = self._cache.get(key)
        if owner is not None:
            return owner
        stamp = changes.stamp
        params = {"key": key}
        if isinstance(changes, SqliteChangeWatch):
            with changes.read_engine.connect() as conn:
                row = conn.execute(self._statement, params).first()
        else:
            async with self._engine.connect() as conn:
                row = (await conn.execute(self._statement, params)).first()
        if row is None:
            return None  # unknown hashes are not cached
        owner = self._owner(key, row)
        # Kept only if nothing changed since the read began: a change heard during the read
        # may be newer than what was read.
        if changes.caching and changes.stamp == stamp:
            if len(self._cache) >= _MAX_CACHED:
                self._changed(None)
            self._cache[key] = owner
            self._by_user.setdefault(owner.user.id, set()).add(key)
        return owner

    def forget(self, key: str) -> None:
        """Drop one entry (this process just changed its row)."""
        owner = self._cache.pop(key, None)
        if owner is not None:
            self._by_user.get(owner.user.id, set()).discard(key)

    def _moved(self, user_id: uuid.UUID, tasks_version: int) -> None:
        """Only the user's tasks_version moved: cached owners take it, nothing is read again."""
        for key in self._by_user.get(user_id, ()):
            owner = self._cache[key]
            if owner.user.tasks_version < tasks_version:
                user = dataclasses.replace(owner.user, tasks_version=tasks_version)
                self._cache[key] = dataclasses.replace(owner, user=user)

    def _changed(self, user_id: uuid.UUID | None) -> None:
        if user_id is None:
            self._cache.clear()
            self._by_user.clear()
            return
        for key in self._by_user.pop(user_id, ()):
            self._cache.pop(key, None)


class KeyLookup(_CachedLookup[KeyOwner]):
    """Who owns an API key, by the key's hash."""

    _statement = _BY_KEY_HASH

    def _owner(self, key: str, row: Any) -> KeyOwner:
        key_id, revoked_at, *user = row
        return KeyOwner(
            key_id=key_id, revoked=revoked_at is not None, user=AuthenticatedUser(*user)
        )


class SessionLookup(_CachedLookup[SessionOwner]):
    """Whose browser session an id hash is."""

    _statement = _BY_SESSION_HASH

    def _owner(self, key: str, row: Any) -> SessionOwner:
        last_seen_at, expires_at, *user = row
        return SessionOwner(key, last_seen_at, expires_at, AuthenticatedUser(*user))
