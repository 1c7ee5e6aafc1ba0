"""The change watch (db/changes.py) hears every commit that may change what a cache holds,
whichever connection or process made it, and says nothing may be cached when it cannot."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from torale.db import migrate
from torale.db.changes import ChangeWatch, SqliteChangeWatch, watch_changes
from torale.db.models import User


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
        watch.close()
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
