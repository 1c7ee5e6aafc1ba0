"""Preview, run-now and the execution history routes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.fakes import Delay, FakeOpenAI, FakeSearxng, FakeWeb, ToolCall, sequence
from tests.fixtures.engine import MET, NOT_MET, new_task, page, run_now, wait_for
from tests.fixtures.users import ApiUser
from torale.db.models import Base


@pytest.fixture
def found_page(fake_web: FakeWeb, fake_search: FakeSearxng, fake_model: FakeOpenAI) -> str:
    fake_web.set_page("/news", page("Apple announced September 9."))
    url = fake_web.url + "/news"
    fake_search.set_results(None, [(url, "News", "")])
    fake_model.script = sequence(MET)
    return url


async def row_counts(app: FastAPI) -> dict[str, int]:
    async with app.state.torale.sessions() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


async def test_preview_runs_the_engine_and_stores_nothing(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, found_page: str
) -> None:
    before = await row_counts(app)
    response = await client.post(
        "/api/v1/tasks/preview",
        json={"search_query": "next iPhone", "condition_description": "a date is announced"},
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["answer"] == MET["answer"]
    assert preview["condition_met"] is True
    assert preview["current_state"] == MET["current_state"]
    assert preview["grounding_sources"] == [{"url": found_page, "title": "Apple Newsroom"}]
    assert preview["inferred_condition"] is None
    assert preview["usage"]["llm_calls"] == 1
    assert "x-ratelimit-remaining" in response.headers
    assert await row_counts(app) == before


async def test_preview_without_a_condition_infers_one(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, found_page: str
) -> None:
    fake_model.script = sequence({**MET, "inferred_condition": "Apple names a release date"})
    response = await client.post(
        "/api/v1/tasks/preview", json={"search_query": "next iPhone"}, headers=alice.headers
    )
    assert response.json()["inferred_condition"] == "Apple names a release date"
    assert fake_model.last is not None
    assert "Infer the condition" in fake_model.last.prompt_text


@pytest.mark.parametrize("extra_settings", [{"model": None, "openai_base_url": None}])
async def test_preview_without_a_model_is_422_at_mode(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    # As for creating a task: a query alone needs a model, and the answer says what to set.
    response = await client.post(
        "/api/v1/tasks/preview", json={"search_query": "q"}, headers=alice.headers
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "mode"]
    assert "TORALE_MODEL" in error["msg"]


async def test_preview_provider_failure_is_502(
    client: httpx.AsyncClient, alice: ApiUser, fake_search: FakeSearxng, found_page: str
) -> None:
    fake_search.fail_next(10, status=500)
    response = await client.post(
        "/api/v1/tasks/preview", json={"search_query": "q"}, headers=alice.headers
    )
    assert response.status_code == 502
    assert "searxng" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "search_query"]),
        ({"search_query": "q", "urls": ["http://10.0.0.1/"]}, ["body", "urls", 0]),
        ({"search_query": "q", "config": {"temperature": 1}}, ["body", "config", "temperature"]),
        ({"search_query": "q", "schedule": "0 9 * * *"}, ["body", "schedule"]),
    ],
)
async def test_preview_validation(
    client: httpx.AsyncClient, alice: ApiUser, body: dict[str, Any], loc: list[Any]
) -> None:
    response = await client.post("/api/v1/tasks/preview", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert loc in [e["loc"] for e in response.json()["detail"]]


async def test_run_now_answers_at_once_and_runs_in_the_background(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, found_page: str
) -> None:
    fake_model.script = sequence(Delay(0.5, then=ToolCall(MET)))
    task = await new_task(client, alice)
    response = await client.post(f"/api/v1/tasks/{task['id']}/execute", headers=alice.headers)
    assert response.status_code == 200
    queued = response.json()
    assert queued["status"] in ("pending", "running")
    assert queued["trigger"] == "manual"
    assert queued["started_at"] is not None
    assert queued["completed_at"] is None
    assert queued["result"] is None
    done = await wait_for(client, alice, task["id"], queued["id"])
    assert done["status"] == "success"
    assert done["started_at"] >= queued["started_at"]


async def test_a_second_run_now_does_not_start_a_duplicate(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, found_page: str
) -> None:
    fake_model.script = sequence(Delay(0.5, then=ToolCall(MET)))
    task = await new_task(client, alice)
    url = f"/api/v1/tasks/{task['id']}/execute"
    answers = await asyncio.gather(*(client.post(url, headers=alice.headers) for _ in range(5)))
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    await wait_for(client, alice, task["id"], ids.pop())
    assert fake_model.calls == 1
    # Once it has finished, a new run can start.
    again = await run_now(client, alice, task["id"])
    assert again["status"] == "success"
    listing = (
        await client.get(f"/api/v1/tasks/{task['id']}/executions", headers=alice.headers)
    ).json()
    assert listing["total"] == 2


async def test_tasks_embed_their_last_execution(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, found_page: str
) -> None:
    task = await new_task(client, alice)
    assert task["last_execution"] is None
    listed_before = (await client.get("/api/v1/tasks", headers=alice.headers)).json()
    assert listed_before["items"][0]["last_execution"] is None
    execution = await run_now(client, alice, task["id"])
    fetched = (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice.headers)).json()
    assert fetched["last_execution_id"] == execution["id"]
    assert fetched["last_execution"] == execution
    # The cached list page moved on too (executions move the owner's tasks_version).
    listed = (await client.get("/api/v1/tasks", headers=alice.headers)).json()
    assert listed["items"][0]["last_execution"] == execution
    assert listed["items"][0]["condition_met"] is True


async def test_paused_tasks_can_still_be_run_by_hand(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, found_page: str
) -> None:
    fake_model.script = sequence(NOT_MET)
    task = await new_task(client, alice, state="paused")
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success"
    after = (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice.headers)).json()
    assert after["state"] == "paused"
    assert after["next_run"] is None


async def test_history_routes_validate_and_paginate(
    client: httpx.AsyncClient, alice: ApiUser, found_page: str
) -> None:
    task = await new_task(client, alice)
    for _ in range(3):
        await run_now(client, alice, task["id"])
    page1 = (
        await client.get(f"/api/v1/tasks/{task['id']}/executions?limit=2", headers=alice.headers)
    ).json()
    assert (page1["total"], len(page1["items"]), page1["limit"]) == (3, 2, 2)
    bad = await client.get(f"/api/v1/tasks/{task['id']}/executions?limit=0", headers=alice.headers)
    assert bad.status_code == 422
    missing = await client.get(
        "/api/v1/tasks/00000000-0000-4000-8000-000000000000/executions", headers=alice.headers
    )
    assert missing.status_code == 404
    execute_missing = await client.post(
        "/api/v1/tasks/00000000-0000-4000-8000-000000000000/execute", headers=alice.headers
    )
    assert execute_missing.status_code == 404
