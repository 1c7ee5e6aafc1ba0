"""The task-list cache is never stale: every write to a user's tasks, by any connection or
process, moves the user's tasks_version (database triggers), and the cache is keyed by it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.fixtures.users import ApiUser
from torale.config import Settings
from torale.db.database import reading
from torale.tasks.list_cache import ListKey, TaskListCache

TASKS = "/api/v1/tasks"


async def tasks_version(settings: Settings, user_id: uuid.UUID) -> int:
    engine = create_async_engine(settings.effective_database_url)
    try:
        async with engine.connect() as conn:
            value = await conn.scalar(
                text("SELECT tasks_version FROM users WHERE id = :id"),
                {"id": user_id.hex if settings.is_sqlite else user_id},
            )
    finally:
        await engine.dispose()
    assert value is not None
    return int(value)


async def test_triggers_move_the_version_on_every_write(
    client: httpx.AsyncClient, settings: Settings, alice: ApiUser, bob: ApiUser
) -> None:
    v0 = await tasks_version(settings, alice.id)
    created = await client.post(TASKS, json={"search_query": "q"}, headers=alice.headers)
    v1 = await tasks_version(settings, alice.id)
    assert v1 > v0
    await client.patch(f"{TASKS}/{created.json()['id']}", json={"name": "n"}, headers=alice.headers)
    v2 = await tasks_version(settings, alice.id)
    assert v2 > v1
    await client.delete(f"{TASKS}/{created.json()['id']}", headers=alice.headers)
    assert await tasks_version(settings, alice.id) > v2
    assert await tasks_version(settings, bob.id) == 0  # other users untouched


async def test_list_reflects_api_writes_at_once(client: httpx.AsyncClient, alice: ApiUser) -> None:
    async def names() -> list[str]:
        response = await client.get(TASKS, headers=alice.headers)
        assert response.status_code == 200
        return [t["name"] for t in response.json()["items"]]

    assert await names() == []
    task = (
        await client.post(TASKS, json={"search_query": "q", "name": "a"}, headers=alice.headers)
    ).json()
    assert await names() == ["a"]
    assert await names() == ["a"]  # served from the cache
    await client.put(f"{TASKS}/{task['id']}", json={"name": "b"}, headers=alice.headers)
    assert await names() == ["b"]
    await client.delete(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert await names() == []


async def test_list_reflects_writes_from_another_connection(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, alice: ApiUser
) -> None:
    task = (
        await client.post(TASKS, json={"search_query": "q", "name": "a"}, headers=alice.headers)
    ).json()
    assert (await client.get(TASKS, headers=alice.headers)).json()["items"][0]["name"] == "a"
    # Another process (a worker, an operator's SQL) changes the row behind the API's back.
    engine = create_async_engine(settings.effective_database_url)
    try:
        async with engine.begin() as conn:
            task_id: Any = uuid.UUID(task["id"])
            await conn.execute(
                text("UPDATE tasks SET name = 'changed elsewhere' WHERE id = :id"),
                {"id": task_id.hex if settings.is_sqlite else task_id},
            )
    finally:
        await engine.dispose()
    # SQLite: the next request sees data_version moved. PostgreSQL: the process hears the
    # change's notification a moment after the commit; sync waits for that moment.
    await app.state.torale.changes.sync()
    listing = (await client.get(TASKS, headers=alice.headers)).json()
    assert listing["items"][0]["name"] == "changed elsewhere"


async def test_a_cache_hit_does_not_query_tasks(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    await client.post(TASKS, json={"search_query": "q"}, headers=alice.headers)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    sync_engine = reading(app.state.torale.database).sync_engine  # where reads run
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        first = await client.get(TASKS, headers=alice.headers)
        after_first = len([s for s in statements if "FROM tasks" in s])
        second = await client.get(TASKS, headers=alice.headers)
        after_second = len([s for s in statements if "FROM tasks" in s])
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    assert first.json() == second.json()
    assert after_first == 1
    assert after_second == 1


async def test_concurrent_writers_all_succeed(client: httpx.AsyncClient, alice: ApiUser) -> None:
    responses = await asyncio.gather(
        *(
            client.post(TASKS, json={"search_query": f"q{i}"}, headers=alice.headers)
            for i in range(30)
        )
    )
    assert [r.status_code for r in responses] == [200] * 30
    assert (await client.get(TASKS, headers=alice.headers)).json()["total"] == 30


def test_cache_is_bounded_by_bytes() -> None:
    cache = TaskListCache(max_bytes=1000)
    user = uuid.uuid4()
    for version in range(10):
        cache.put(ListKey(user, version, 1, 20, None, None), b"x" * 200)
    assert len(cache) == 5
    assert cache.get(ListKey(user, 0, 1, 20, None, None)) is None
    assert cache.get(ListKey(user, 9, 1, 20, None, None)) == b"x" * 200
    cache.put(ListKey(user, 99, 1, 20, None, None), b"y" * 600)  # larger than a quarter
    assert cache.get(ListKey(user, 99, 1, 20, None, None)) is None
