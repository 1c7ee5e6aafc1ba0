"""Browser sessions and one-time sign-in links (auth/sessions.py, auth/signin_links.py): kept only
as hashes, idle and absolute expiry, sign out, sign out everywhere, ended by deactivation, links
single-use and short-lived, and their tokens never in a log line."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from tests.fixtures.users import ApiUser, create_test_user, set_user_active
from torale.admin import service as admin_service
from torale.auth import sessions, signin_links
from torale.config import Settings
from torale.db.models import SignInLink, WebSession
from torale.logs import OneLineFormatter
from torale.state import AppState

POLICY = sessions.SessionPolicy(idle=timedelta(hours=1), lifetime=timedelta(days=1), secure=False)


def _state(app: FastAPI) -> AppState:
    state: AppState = app.state.torale
    return state


async def _start(app: FastAPI, user_id: uuid.UUID) -> str:
    state = _state(app)
    async with state.sessions() as session:
        token = await sessions.start(
            session, user_id=user_id, hashing_key=state.hashing_key, policy=POLICY
        )
        await session.commit()
    return token


async def _find(app: FastAPI, token: str) -> sessions.Found | None:
    state = _state(app)
    return await sessions.find(
        state.session_lookup, token=token, hashing_key=state.hashing_key, policy=POLICY
    )


async def _shift(app: FastAPI, **values: datetime) -> None:
    async with _state(app).sessions() as session:
        await session.execute(update(WebSession).values(**values))
        await session.commit()


async def test_a_session_is_stored_only_as_a_hash(app: FastAPI, alice: ApiUser) -> None:
    token = await _start(app, alice.id)
    assert len(token) >= 43  # 256 bits, URL-safe base64
    async with _state(app).sessions() as session:
        rows = list(await session.scalars(select(WebSession)))
    assert len(rows) == 1
    assert token not in rows[0].id_hash
    found = await _find(app, token)
    assert found is not None
    assert found.user.id == alice.id
    assert await _find(app, token + "x") is None


async def test_idle_expiry(app: FastAPI, alice: ApiUser) -> None:
    token = await _start(app, alice.id)
    await _shift(app, last_seen_at=datetime.now(UTC) - timedelta(minutes=59))
    found = await _find(app, token)
    assert found is not None
    assert found.needs_touch
    async with _state(app).sessions() as session:
        await sessions.touch(session, id_hash=found.id_hash)
        await session.commit()
    refreshed = await _find(app, token)
    assert refreshed is not None
    assert not refreshed.needs_touch
    await _shift(app, last_seen_at=datetime.now(UTC) - timedelta(minutes=61))
    assert await _find(app, token) is None


async def test_absolute_expiry_however_active(app: FastAPI, alice: ApiUser) -> None:
    token = await _start(app, alice.id)
    await _shift(app, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert await _find(app, token) is None
    async with _state(app).sessions() as session:
        await sessions.sweep(session, policy=POLICY)
        await session.commit()
        assert list(await session.scalars(select(WebSession))) == []


async def test_sign_out_and_sign_out_everywhere(app: FastAPI, alice: ApiUser, bob: ApiUser) -> None:
    first, second = await _start(app, alice.id), await _start(app, alice.id)
    bobs = await _start(app, bob.id)
    state = _state(app)
    async with state.sessions() as session:
        await sessions.end(session, token=first, hashing_key=state.hashing_key)
        await session.commit()
    assert await _find(app, first) is None
    assert await _find(app, second) is not None
    async with state.sessions() as session:
        assert await sessions.end_all(session, user_id=alice.id) == 1
        await session.commit()
    assert await _find(app, second) is None
    assert await _find(app, bobs) is not None  # only alice's


async def test_deactivation_ends_the_users_sessions(app: FastAPI, alice: ApiUser) -> None:
    admin = await create_test_user(app, "root@example.com", role="admin")
    token = await _start(app, alice.id)
    async with _state(app).sessions() as session:
        await admin_service.deactivate(session, user_id=alice.id, actor_id=admin.id)
        await session.commit()
    assert await _find(app, token) is None
    async with _state(app).sessions() as session:
        assert list(await session.scalars(select(WebSession))) == []  # gone, not just refused


def test_cookie_is_http_only_lax_and_secure_on_https(tmp_path: object) -> None:
    plain = sessions.SessionPolicy.from_settings(Settings(_env_file=None))
    assert plain.cookie("t") | {"value": "t"} == {
        "key": "torale_session",
        "value": "t",
        "max_age": 30 * 24 * 3600,
        "httponly": True,
        "samesite": "lax",
        "secure": False,
        "path": "/",
    }
    https = Settings(_env_file=None, public_url="https://torale.example.com/")
    assert sessions.SessionPolicy.from_settings(https).cookie("t")["secure"] is True
    assert https.public_base_url == "https://torale.example.com"


async def _link(app: FastAPI, user_id: uuid.UUID) -> str:
    state = _state(app)
    async with state.sessions() as session:
        token = await signin_links.create(session, user_id=user_id, hashing_key=state.hashing_key)
        await session.commit()
    return token


async def _redeem(app: FastAPI, token: str) -> uuid.UUID | None:
    state = _state(app)
    async with state.sessions() as session:
        user_id = await signin_links.redeem(session, token=token, hashing_key=state.hashing_key)
        await session.commit()
    return user_id


async def test_a_signin_link_works_once(app: FastAPI, alice: ApiUser) -> None:
    token = await _link(app, alice.id)
    async with _state(app).sessions() as session:
        stored = list(await session.scalars(select(SignInLink.token_hash)))
    assert stored
    assert token not in stored[0]
    assert await _redeem(app, token) == alice.id
    assert await _redeem(app, token) is None
    assert await _redeem(app, "not-a-token") is None


async def test_a_deactivated_users_link_does_not_sign_in(app: FastAPI, alice: ApiUser) -> None:
    token = await _link(app, alice.id)
    await set_user_active(app, alice.id, False)
    assert await _redeem(app, token) is None
    await set_user_active(app, alice.id, True)
    assert await _redeem(app, token) == alice.id  # not used up by the refused attempt


async def test_old_links_are_removed_when_a_new_one_is_made(app: FastAPI, alice: ApiUser) -> None:
    await _link(app, alice.id)
    async with _state(app).sessions() as session:
        await session.execute(
            update(SignInLink).values(expires_at=datetime.now(UTC) - timedelta(days=2))
        )
        await session.commit()
    await _link(app, alice.id)
    async with _state(app).sessions() as session:
        assert len(list(await session.scalars(select(SignInLink)))) == 1


async def test_a_signin_link_expires_after_15_minutes(app: FastAPI, alice: ApiUser) -> None:
    token = await _link(app, alice.id)
    async with _state(app).sessions() as session:
        link = await session.scalar(select(SignInLink))
        assert link is not None
        assert timedelta(minutes=14) < link.expires_at - link.created_at <= timedelta(minutes=15)
        await session.execute(
            update(SignInLink).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    assert await _redeem(app, token) is None


@pytest.mark.parametrize(
    "message",
    [
        '127.0.0.1:5000 - "GET /signin?token=abcDEF_123-x HTTP/1.1" 303',
        '127.0.0.1:5000 - "GET /signin?next=/&token=abcDEF_123-x HTTP/1.1" 303',
        '127.0.0.1:5000 - "GET /signin/oidc/callback?code=abcDEF_123-x&state=s HTTP/1.1" 303',
        '127.0.0.1:5000 - "GET /signin/oidc/callback?state=s&code=abcDEF_123-x HTTP/1.1" 303',
    ],
)
def test_log_lines_never_carry_a_token(message: str) -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, message, (), None)
    line = OneLineFormatter("%(message)s").format(record)
    assert "abcDEF_123-x" not in line
    assert "token=[redacted]" in line or "code=[redacted]" in line
