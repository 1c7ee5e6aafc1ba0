"""Task bodies (torale/tasks/schemas.py): what reads back."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from tests.fixtures.users import ApiUser
from torale.db.models import Task

TASKS = "/api/v1/tasks"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL refused NULs
async def test_a_task_saved_before_the_rules_still_reads(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    """SQLite stored text the input rules now refuse; such a row must not break its owner's
    list (the answer shows it cleaned)."""
    task = (await client.post(TASKS, json={"search_query": "q"}, headers=alice.headers)).json()
    async with app.state.torale.sessions() as session:
        await session.execute(
            update(Task)
            .where(Task.id == uuid.UUID(task["id"]))
            .values(
                config={"model": "gpt\x00-4o"},
                notifications=[{"type": "apprise", "url": "jsons://exa\x00mple.com/"}],
            )
        )
        await session.commit()
    listing = await client.get(TASKS, headers=alice.headers)
    assert listing.status_code == 200, listing.text
    assert listing.json()["items"][0]["config"] == {"model": "gpt-4o"}
    single = await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert single.status_code == 200
