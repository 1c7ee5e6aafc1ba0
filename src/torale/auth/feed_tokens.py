"""Feed tokens: the secret in a user's Atom feed URLs (`/feeds/<token>/…`), because feed readers
cannot send an Authorization header. One per user, 256 random bits, kept only as a keyed hash
on the user's row and shown once, when made; rotating replaces it, so the old URLs stop at
once, and turning feeds off removes it. Callers commit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import User

# token_urlsafe(32) is 43 characters; anything far from that is nobody's token.
_LENGTHS = range(32, 65)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str, hashing_key: bytes) -> str:
    return hmac.new(hashing_key, b"feed:" + token.encode(), hashlib.sha256).hexdigest()


async def rotate(
    session: AsyncSession, *, user_id: uuid.UUID, hashing_key: bytes
) -> tuple[str, datetime]:
    """A new token for the user (made if there was none); the old one stops working. Returns
    the token (never stored) and when it was made."""
    token = new_token()
    now = datetime.now(UTC)
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(feed_token_hash=hash_token(token, hashing_key), feed_token_created_at=now)
    )
    return token, now


async def revoke(session: AsyncSession, *, user_id: uuid.UUID) -> None:
    """Feeds off: the user's token stops working and none replaces it."""
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(feed_token_hash=None, feed_token_created_at=None)
    )


async def created_at(session: AsyncSession, *, user_id: uuid.UUID) -> datetime | None:
    """When the user's token was made; None when they have none."""
    made: datetime | None = await session.scalar(
        select(User.feed_token_created_at).where(User.id == user_id)
    )
    return made


async def owner(session: AsyncSession, *, token: str, hashing_key: bytes) -> User | None:
    """The active user whose feed token this is; None for an unknown or replaced token and for
    a deactivated account's (callers answer all three alike)."""
    if len(token) not in _LENGTHS:
        return None
    user = await session.scalar(
        select(User).where(User.feed_token_hash == hash_token(token, hashing_key))
    )
    return user if user is not None and user.is_active else None
