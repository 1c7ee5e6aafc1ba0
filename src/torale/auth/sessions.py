"""Browser sessions: a random 256-bit id in an HttpOnly cookie, kept in the database only as a
keyed hash. A session ends when unused for the idle time, at its absolute expiry, on sign-out,
on "sign out everywhere", and at once when its user is deactivated. Callers commit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from torale.auth.lookup import AuthenticatedUser, SessionLookup, SessionOwner
from torale.config import Settings
from torale.db.models import WebSession

COOKIE_NAME = "torale_session"
# last_seen_at is written at most this often per session: reading a page is not a write.
TOUCH_EVERY = timedelta(seconds=60)


def new_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_token(token: str, hashing_key: bytes) -> str:
    return hmac.new(hashing_key, b"session:" + token.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle: timedelta
    lifetime: timedelta
    secure: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        return cls(
            idle=timedelta(seconds=settings.session_idle_seconds),
            lifetime=timedelta(seconds=settings.session_max_seconds),
            secure=settings.secure_cookies,
        )

    def cookie(self, token: str) -> dict[str, object]:
        """Keyword arguments for `Response.set_cookie`."""
        return {
            "key": COOKIE_NAME,
            "value": token,
            "max_age": int(self.lifetime.total_seconds()),
            "httponly": True,
            "samesite": "lax",
            "secure": self.secure,
            "path": "/",
        }


@dataclass(frozen=True, slots=True)
class Found:
    """A live session and its user, as read."""

    owner: SessionOwner
    needs_touch: bool

    @property
    def id_hash(self) -> str:
        return self.owner.id_hash

    @property
    def user(self) -> AuthenticatedUser:
        return self.owner.user


async def start(
    session: AsyncSession, *, user_id: uuid.UUID, hashing_key: bytes, policy: SessionPolicy
) -> str:
    """A new session for the user; returns its id (the cookie value, never stored)."""
    token = new_token()
    now = datetime.now(UTC)
    session.add(
        WebSession(
            id_hash=hash_token(token, hashing_key),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + policy.lifetime,
        )
    )
    await session.flush()
    return token


def check(owner: SessionOwner | None, policy: SessionPolicy) -> Found | None:
    """The session if it is alive (used within the idle time, before its absolute expiry) and
    its user active; None otherwise. Checked on every request: time moves on while the row is
    cached."""
    if owner is None or not owner.user.is_active:
        return None
    now = datetime.now(UTC)
    if owner.expires_at <= now or owner.last_seen_at + policy.idle <= now:
        return None
    return Found(owner, needs_touch=now - owner.last_seen_at >= TOUCH_EVERY)


async def find(
    lookup: SessionLookup, *, token: str, hashing_key: bytes, policy: SessionPolicy
) -> Found | None:
    """The live session with this id and its active user; None for an unknown, expired or
    deactivated one. A read: an expired row is left for `end`/`sweep` to remove."""
    return check(await lookup.find(hash_token(token, hashing_key)), policy)


async def touch(session: AsyncSession, *, id_hash: str) -> None:
    """Mark the session used now (it keeps its absolute expiry)."""
    await session.execute(
        update(WebSession)
        .where(WebSession.id_hash == id_hash)
        .values(last_seen_at=datetime.now(UTC))
    )


async def end(session: AsyncSession, *, token: str, hashing_key: bytes) -> None:
    """Sign out: this session ends."""
    await session.execute(
        delete(WebSession).where(WebSession.id_hash == hash_token(token, hashing_key))
    )


async def end_all(session: AsyncSession, *, user_id: uuid.UUID) -> int:
    """Sign out everywhere (also what deactivating a user does): every session of the user
    ends. Returns how many there were."""
    result = await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)


async def sweep(session: AsyncSession, *, policy: SessionPolicy) -> None:
    """Remove sessions past their absolute or idle expiry."""
    now = datetime.now(UTC)
    await session.execute(
        delete(WebSession).where(
            (WebSession.expires_at <= now) | (WebSession.last_seen_at <= now - policy.idle)
        )
    )
