"""Changes that race a delete of the same task, on PostgreSQL (SQLite takes one writer at a time).

The interleaving is forced: a transaction deletes the task and holds its row lock until the
request under test is waiting for that lock, then commits. The request must answer as if it
came after the delete (404), never 500.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, text

from tests.conftest import ApiUser
from torale.db.models import Task
from torale.state import AppState

TASKS = "/api/v1/tasks"
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def _wait_until_blocked(state: AppState) -> None:
    """Until some connection of this database waits for a lock."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(400):
        async with state.engine.connect() as connection:
            if await connection.scalar(query):
                return
        await asyncio.sleep(0.025)
    raise AssertionError("the request never waited for the deleting transaction's lock")


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("PATCH", {"name": "renamed"}),
        ("PUT", {"schedule": "0 10 * * *", "timezone": "Europe/Berlin"}),
        ("PATCH", {"state": "paused"}),
        ("DELETE", None),
    ],
)
async def test_a_change_racing_a_delete_is_a_404(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, method: str, body: Any
) -> None:
    created = await client.post(TASKS, json={"search_query": "q"}, headers=alice.headers)
    task_id = uuid.UUID(created.json()["id"])
    state: AppState = app.state.torale
    async with state.sessions() as deleting:
        await deleting.execute(delete(Task).where(Task.id == task_id))
        change = asyncio.create_task(
            client.request(method, f"{TASKS}/{task_id}", json=body, headers=alice.headers)
        )
        await _wait_until_blocked(state)
        await deleting.commit()
    response = await change
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "Task not found"}
    listing = await client.get(TASKS, headers=alice.headers)
    assert listing.json()["total"] == 0
