"""Task rules in torale/tasks/service.py: changes racing a delete, default names."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, text

from tests.fixtures.users import ApiUser
from torale.db.models import Task
from torale.state import AppState
from torale.tasks.service import default_name

TASKS = "/api/v1/tasks"


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


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite: one writer
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
    """The interleaving is forced: a transaction deletes the task (which locks its owner's row,
    see db/locks.py) and holds its locks until the request under test waits for one, then
    commits. The request must answer as if it came after the delete (404), never 500
    (StaleDataError, from updating a row that is gone)."""
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


async def test_an_unnamed_task_is_named_after_its_query(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    async def name_of(**body: Any) -> str:
        response = await client.post(TASKS, json=body, headers=alice.headers)
        assert response.status_code == 200, response.text
        name: str = response.json()["name"]
        return name

    assert await name_of(search_query="  Is the\nRust 2.0   release out? ") == (
        "Is the Rust 2.0 release out?"
    )
    long_query = "When will " + "the next very long named product " * 5 + "ship"
    shortened = await name_of(search_query=long_query)
    assert len(shortened) <= 80
    assert shortened.endswith("…")
    assert long_query.startswith(shortened[:-1])  # cut at a word
    assert await name_of(search_query="q", name="Mine") == "Mine"
    # Only a name that is not sent is made up: an empty one is still refused.
    response = await client.post(
        TASKS, json={"search_query": "q", "name": " "}, headers=alice.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "name"]


def test_a_default_name_comes_from_the_first_url_without_a_query() -> None:
    assert default_name("", ["https://example.com/pricing/", "https://b.io"]) == (
        "example.com/pricing"
    )
    assert default_name("  ", []) == "New monitor"
