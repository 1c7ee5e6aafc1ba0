"""One-time sign-in links (`/signin?token=…`, as Jupyter prints): valid 15 minutes, used at
most once, kept only as a keyed hash. `torale serve` prints one on first start and `torale
signin-link --email E` makes one for any user. Callers commit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import SignInLink, User

VALID_FOR = timedelta(minutes=15)


def hash_token(token: str, hashing_key: bytes) -> str:
    return hmac.new(hashing_key, b"signin:" + token.encode(), hashlib.sha256).hexdigest()


def link_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/signin?{urlencode({'token': token})}"


async def create(session: AsyncSession, *, user_id: uuid.UUID, hashing_key: bytes) -> str:
    """A new link's token for the user (shown once, stored hashed). Links expired a day ago
    or more are removed on the way."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    await session.execute(delete(SignInLink).where(SignInLink.expires_at < now - timedelta(days=1)))
    session.add(
        SignInLink(
            token_hash=hash_token(token, hashing_key),
            user_id=user_id,
            created_at=now,
            expires_at=now + VALID_FOR,
        )
    )
    await session.flush()
    return token


async def redeem(session: AsyncSession, *, token: str, hashing_key: bytes) -> uuid.UUID | None:
    """Use the link: its user's id, or None when it is unknown, expired or used already, or its
    user is deactivated. One conditional UPDATE, so two concurrent uses cannot both succeed."""
    now = datetime.now(UTC)
    token_hash = hash_token(token, hashing_key)
    result = await session.execute(
        update(SignInLink)
        .where(
            SignInLink.token_hash == token_hash,
            SignInLink.used_at.is_(None),
            SignInLink.expires_at > now,
            SignInLink.user_id.in_(select(User.id).where(User.is_active.is_(True))),
        )
        .values(used_at=now)
    )
    if not getattr(result, "rowcount", 0):
        return None
    user_id: uuid.UUID | None = await session.scalar(
        select(SignInLink.user_id).where(SignInLink.token_hash == token_hash)
    )
    return user_id
