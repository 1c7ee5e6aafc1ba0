"""Who owns a key or a session (auth/lookup.py), cached in memory and still exact: on both
databases a cached owner is used without a query, and a change made by another process (its own
connection pool) applies as soon as the process has heard of it (SQLite: on the next request;
PostgreSQL: when its notification arrives, which `changes.sync` waits for)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from sqlalchemy import Executable, delete, event, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.fixtures.users import ApiUser
from torale.auth import sessions
from torale.auth.keys import hash_api_key
from torale.db.models import ApiKey, User, WebSession
from torale.state import AppState


def _state(app: FastAPI) -> AppState:
    state: AppState = app.state.torale
    return state


@pytest.fixture
async def other_process(app: FastAPI) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(_state(app).settings.effective_database_url)
    yield engine
    await engine.dispose()


async def _caching(app: FastAPI) -> None:
    """Wait until the process listens for changes (PostgreSQL connects in the background)."""
    state = _state(app)
    for _ in range(200):
        if state.changes.caching:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the change watch never started")


class Reads:
    """Counts the lookups' queries (SQLite reads on a synchronous engine of its own)."""

    def __init__(self, app: FastAPI) -> None:
        state = _state(app)
        read_engine = getattr(state.changes, "read_engine", None)
        self.engine = read_engine if read_engine is not None else state.database.sync_engine
        self.count = 0

    def __enter__(self) -> Reads:
        event.listen(self.engine, "before_cursor_execute", self._counted)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._counted)

    def _counted(self, *_: object) -> None:
        self.count += 1


async def test_a_cached_key_owner_is_used_without_a_query(app: FastAPI, alice: ApiUser) -> None:
    await _caching(app)
    lookup = _state(app).key_lookup
    key_hash = hash_api_key(alice.key, _state(app).hashing_key)
    with Reads(app) as reads:
        first = await lookup.find(key_hash)
        second = await lookup.find(key_hash)
    assert first == second
    assert first is not None
    assert first.user.id == alice.id
    assert reads.count == 1


async def test_another_process_revoking_or_deactivating_applies_to_cached_owners(
    app: FastAPI, alice: ApiUser, other_process: AsyncEngine
) -> None:
    await _caching(app)
    state = _state(app)
    key_hash = hash_api_key(alice.key, state.hashing_key)
    owner = await state.key_lookup.find(key_hash)
    assert owner is not None
    assert not owner.revoked
    assert owner.user.is_active

    async def write(statement: Executable) -> None:
        async with other_process.begin() as conn:
            await conn.execute(statement)
        await state.changes.sync()

    await write(update(User).where(User.id == alice.id).values(is_active=False))
    owner = await state.key_lookup.find(key_hash)
    assert owner is not None
    assert not owner.user.is_active
    now = datetime.now(UTC)
    await write(update(ApiKey).where(ApiKey.user_id == alice.id).values(revoked_at=now))
    owner = await state.key_lookup.find(key_hash)
    assert owner is not None
    assert owner.revoked


async def test_another_process_ending_a_session_applies_to_cached_sessions(
    app: FastAPI, alice: ApiUser, other_process: AsyncEngine
) -> None:
    await _caching(app)
    state = _state(app)
    policy = sessions.SessionPolicy.from_settings(state.settings)
    async with state.sessions() as session:
        token = await sessions.start(
            session, user_id=alice.id, hashing_key=state.hashing_key, policy=policy
        )
        await session.commit()

    async def find() -> sessions.Found | None:
        return await sessions.find(
            state.session_lookup, token=token, hashing_key=state.hashing_key, policy=policy
        )

    assert await find() is not None
    assert await find() is not None  # cached
    async with other_process.begin() as conn:  # its "sign out everywhere"
        await conn.execute(delete(WebSession).where(WebSession.user_id == alice.id))
    await state.changes.sync()
    assert await find() is None


async def test_a_read_that_a_change_overtook_is_not_kept(app: FastAPI, alice: ApiUser) -> None:
    """A change heard while a lookup was reading may be newer than what it read."""
    await _caching(app)
    state = _state(app)
    lookup = state.key_lookup
    key_hash = hash_api_key(alice.key, state.hashing_key)
    changed_during_read = True

    def overtaken(*_: object) -> None:
        nonlocal changed_during_read
        if changed_during_read:
            changed_during_read = False
            state.changes.changed(uuid.uuid4())  # anyone's change moves the stamp

    with Reads(app) as reads:
        event.listen(reads.engine, "before_cursor_execute", overtaken)
        try:
            assert await lookup.find(key_hash) is not None
            assert await lookup.find(key_hash) is not None
        finally:
            event.remove(reads.engine, "before_cursor_execute", overtaken)
    assert reads.count == 2  # the first answer was used, not kept; the second was kept
    with Reads(app) as reads:
        assert await lookup.find(key_hash) is not None
    assert reads.count == 0


async def test_a_write_to_a_users_tasks_moves_the_cached_tasks_version(
    app: FastAPI, alice: ApiUser, other_process: AsyncEngine
) -> None:
    await _caching(app)
    state = _state(app)
    key_hash = hash_api_key(alice.key, state.hashing_key)
    before = await state.key_lookup.find(key_hash)
    assert before is not None
    async with other_process.begin() as conn:  # as the triggers move it on a task's write
        await conn.execute(
            text("UPDATE users SET tasks_version = tasks_version + 5 WHERE id = :id"),
            {"id": alice.id.hex if state.settings.is_sqlite else alice.id},
        )
    await state.changes.sync()
    with Reads(app) as reads:
        after = await state.key_lookup.find(key_hash)
    assert after is not None
    assert after.user.tasks_version == before.user.tasks_version + 5
    assert after.user == dataclasses.replace(before.user, tasks_version=after.user.tasks_version)
    # PostgreSQL says which user and which version: nothing is read again. (SQLite's
    # data_version says only that something changed: the owner is read again.)
    assert reads.count == (1 if state.settings.is_sqlite else 0)
