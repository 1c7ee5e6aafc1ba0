"""The change watch (db/changes.py) hears every commit that may change what a cache holds,
whichever connection or process made it, and says nothing may be cached when it cannot."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from tests.drills.proxy import TcpProxy
from torale.db import changes, migrate
from torale.db.changes import ChangeWatch, PostgresChangeWatch, SqliteChangeWatch, watch_changes
from torale.db.database import create_engine, create_sessionmaker, session_scope
from torale.db.models import ApiKey, Task, User, WebSession


async def test_sqlite_hears_commits_of_any_other_connection(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'torale.db'}"
    await migrate.upgrade(url)
    engine = create_async_engine(url)
    watch = watch_changes(engine)
    heard: list[uuid.UUID | None] = []
    watch.subscribe(heard.append)
    try:
        assert isinstance(watch, SqliteChangeWatch)
        assert watch.caching
        watch.check()
        stamp, mark = watch.stamp, watch.mark(uuid.uuid4())
        heard.clear()
        watch.check()
        assert (watch.stamp, heard) == (stamp, [])  # nothing committed: nothing heard
        async with AsyncSession(engine) as session:
            session.add(User(email="new@example.com"))
            await session.commit()
        watch.check()
        assert heard == [None]  # SQLite cannot say whose rows: everything goes
        assert watch.stamp > stamp
        assert watch.mark(uuid.uuid4()) > mark
    finally:
        await watch.close()
        await engine.dispose()


def test_a_watch_that_watches_nothing_lets_nothing_be_cached() -> None:
    watch = ChangeWatch()
    assert not watch.caching
    heard: list[uuid.UUID | None] = []
    watch.subscribe(heard.append)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    marks = watch.mark(alice), watch.mark(bob)
    watch.changed(alice)
    assert heard == [alice]
    assert watch.mark(alice) > marks[0]
    assert watch.mark(bob) == marks[1]
    watch.changed(None)
    assert watch.mark(bob) > marks[1]
    assert len({watch.mark(alice), watch.mark(bob)}) == 1


# --- PostgreSQL: LISTEN/NOTIFY ------------------------------------------------------------------


@pytest.fixture
async def pg(make_postgres_database: Callable[[], str]) -> AsyncIterator[AsyncEngine]:
    url = await asyncio.to_thread(make_postgres_database)
    await migrate.upgrade(url)
    engine = create_engine(url, timeout=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def watch(pg: AsyncEngine) -> AsyncIterator[PostgresChangeWatch]:
    made = watch_changes(pg, timeout=5)
    assert isinstance(made, PostgresChangeWatch)
    await made.start()
    await _listening(made)
    yield made
    await made.close()


async def _listening(watch: PostgresChangeWatch, connections: int = 1) -> None:
    for _ in range(200):
        if watch.caching and watch.connections >= connections:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the watch did not listen")


def _other_process(engine: AsyncEngine) -> AsyncEngine:
    """A connection pool of its own on the same database, as another process has."""
    return create_async_engine(engine.url)


async def _user_with_key_and_session(engine: AsyncEngine) -> tuple[uuid.UUID, uuid.UUID]:
    async with AsyncSession(engine) as session:
        user = User(email=f"{uuid.uuid4().hex}@example.com")
        session.add(user)
        await session.flush()
        key = ApiKey(user_id=user.id, name="k", key_prefix="sk_x", key_hash=uuid.uuid4().hex)
        session.add(key)
        now = datetime.now(UTC)
        session.add(
            WebSession(
                id_hash=uuid.uuid4().hex,
                user_id=user.id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(days=1),
            )
        )
        await session.flush()
        ids = user.id, key.id
        await session.commit()
        return ids


@pytest.mark.postgres
async def test_postgres_hears_whose_rows_another_process_changed(
    pg: AsyncEngine, watch: PostgresChangeWatch
) -> None:
    other = _other_process(pg)
    heard: list[uuid.UUID | None] = []
    watch.subscribe(heard.append)
    try:
        alice, key = await _user_with_key_and_session(other)
        bob, _ = await _user_with_key_and_session(other)
        await watch.sync()
        heard.clear()
        writes = [
            update(User).where(User.id == alice).values(is_active=False),
            update(ApiKey).where(ApiKey.id == key).values(revoked_at=datetime.now(UTC)),
            delete(WebSession).where(WebSession.user_id == alice),
        ]
        for write in writes:
            async with other.begin() as conn:
                await conn.execute(write)
            await watch.sync()  # after this, the commit before it has been heard
            assert heard == [alice], write
            heard.clear()
        # A key's use is written every 30 s and cached nowhere: not a change.
        async with other.begin() as conn:
            await conn.execute(update(ApiKey).values(last_used_at=datetime.now(UTC)))
        await watch.sync()
        assert heard == []
        mark = watch.mark(bob)
        async with other.begin() as conn:  # a task of bob's moves his tasks_version
            await conn.execute(
                insert(Task).values(
                    id=uuid.uuid4(),
                    user_id=bob,
                    name="t",
                    search_query="q",
                    condition_description="c",
                    schedule="0 9 * * *",
                    timezone="UTC",
                    state="paused",
                    notify_behavior="once",
                )
            )
        await watch.sync()
        assert heard == [bob]
        # Said with the new version, to whoever takes it so: nothing else of bob's changed.
        moved: list[tuple[uuid.UUID, int]] = []
        watch.subscribe(lambda _user: None, lambda user, version: moved.append((user, version)))
        async with other.begin() as conn:
            await conn.execute(update(Task).where(Task.user_id == bob).values(name="u"))
            version = await conn.scalar(select(User.tasks_version).where(User.id == bob))
        await watch.sync()
        assert moved == [(bob, version)]
        moved.clear()
        async with other.begin() as conn:  # more than the version: a change, not a move
            await conn.execute(
                update(User)
                .where(User.id == bob)
                .values(tasks_version=User.tasks_version + 1, role="admin")
            )
        await watch.sync()
        assert moved == []
        assert watch.mark(bob) > mark  # what is cached about bob under his mark is dropped
    finally:
        await other.dispose()


@pytest.mark.postgres
async def test_losing_the_listening_connection_forgets_everything_and_reconnects(
    pg: AsyncEngine, watch: PostgresChangeWatch
) -> None:
    heard: list[tuple[uuid.UUID | None, bool]] = []  # (whose change, caching at that moment)
    watch.subscribe(lambda user: heard.append((user, watch.caching)))
    assert watch.caching
    async with pg.connect() as conn:
        ended = await conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": changes.APPLICATION_NAME},
        )
    assert ended == 1
    await _listening(watch, connections=2)
    # Everything cached was dropped as it went (caching off), and again as it listened anew
    # (what changed meanwhile is unknown).
    assert heard[:1] == [(None, False)]
    assert heard[-1] == (None, True)
    await watch.sync()
    assert watch.caching


@pytest.mark.postgres
async def test_a_listener_cut_off_without_being_told_stops_caching(
    pg: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changes, "KEEPALIVE_SECONDS", 0.2)
    monkeypatch.setattr(changes, "MARKER_TIMEOUT_SECONDS", 0.5)
    with TcpProxy(pg.url.host or "127.0.0.1", pg.url.port or 5432) as proxy:
        through = create_async_engine(pg.url.set(host="127.0.0.1", port=proxy.port))
        watch = changes.PostgresChangeWatch(through, timeout=2)
        await watch.start()
        try:
            await _listening(watch)
            proxy.blackhole()  # a partition: nothing passes, nothing is closed
            for _ in range(200):
                if not watch.caching:
                    break
                await asyncio.sleep(0.01)
            assert not watch.caching
            proxy.forward()
            await _listening(watch, connections=2)
        finally:
            await watch.close()
            await through.dispose()


@pytest.mark.postgres
async def test_a_unit_of_work_that_wrote_waits_until_its_changes_are_heard(
    pg: AsyncEngine, watch: PostgresChangeWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, key = await _user_with_key_and_session(pg)
    await watch.sync()
    heard: list[uuid.UUID | None] = []
    watch.subscribe(heard.append)
    synced: list[bool] = []
    real_sync = watch.sync

    async def spy() -> None:
        await real_sync()
        synced.append(True)

    monkeypatch.setattr(watch, "sync", spy)
    sessions = create_sessionmaker(pg)
    async with session_scope(sessions, writes=False) as session:
        await session.scalar(select(User.email).where(User.id == alice))
    assert synced == []  # a read waits for nothing
    async with session_scope(sessions) as session:
        await session.execute(update(ApiKey).where(ApiKey.id == key).values(revoked_at=None))
    assert synced == [True]
    assert heard == [alice]  # heard before the unit of work returned
    async with sessions() as session:  # any session, not only session_scope's
        user = await session.get(User, alice)
        assert user is not None
        user.first_name = "Alice"
        await session.commit()
        assert synced == [True, True]
