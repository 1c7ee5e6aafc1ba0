"""The engine against local stand-ins for the internet: a SearXNG, web pages and a model.

The fakes run for the whole session (reset before each test). The settings point the engine at
them and allow exactly 127.0.0.1 as a private network, so the outbound guard stays on: any other
private address (127.0.0.2 included) is refused as it would be in production.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ApiUser
from tests.fakes import FakeOpenAI, FakeSearxng, FakeWeb, article_html

MET = {
    "answer": "Apple will release the iPhone 18 on September 9.",
    "condition_met": True,
    "current_state": {"release_date": "September 9"},
    "reasoning": "The newsroom article names the date.",
    "confidence": 0.9,
    "sources": [],
}
NOT_MET = {
    "answer": "No release date has been announced yet.",
    "condition_met": False,
    "current_state": {"release_date": None},
    "reasoning": "The page says the date is to be announced.",
    "confidence": 0.8,
    "sources": [],
}


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_search() -> Iterator[FakeSearxng]:
    with FakeSearxng() as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_web() -> Iterator[FakeWeb]:
    with FakeWeb() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_fakes(fake_model: FakeOpenAI, fake_search: FakeSearxng, fake_web: FakeWeb) -> None:
    for fake in (fake_model, fake_search, fake_web):
        fake.reset()
    fake_search.clear_results()


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    """Parametrise this (not settings_overrides) to change a setting in an engine test."""
    return {}


@pytest.fixture
def settings_overrides(
    fake_model: FakeOpenAI, fake_search: FakeSearxng, extra_settings: dict[str, Any]
) -> dict[str, Any]:
    return {
        "model": "fake-model",
        "openai_base_url": fake_model.url + "/v1",
        "search_provider": "searxng",
        "searxng_url": fake_search.url,
        "allowed_networks": "127.0.0.1/32",
        "provider_retries": 2,
        "retry_backoff_seconds": 0.01,
        "fetch_timeout_seconds": 2,
        "model_timeout_seconds": 5,
        "run_timeout_seconds": 15,
        **extra_settings,
    }


def page(text: str, *, title: str = "Apple Newsroom", noise: str = "") -> str:
    return article_html(title, [text, "Apple designs the iPhone in California."], nav_noise=noise)


async def new_task(client: httpx.AsyncClient, user: ApiUser, **body: Any) -> dict[str, Any]:
    body.setdefault("search_query", "When is the next iPhone release?")
    body.setdefault("condition_description", "Apple has announced a specific date")
    response = await client.post("/api/v1/tasks", json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def run_now(client: httpx.AsyncClient, user: ApiUser, task_id: str) -> dict[str, Any]:
    """Run the task and wait for the outcome."""
    response = await client.post(f"/api/v1/tasks/{task_id}/execute?wait=true", headers=user.headers)
    assert response.status_code == 200, response.text
    execution: dict[str, Any] = response.json()
    assert execution["status"] in ("success", "failed"), execution
    return execution


async def wait_for(
    client: httpx.AsyncClient, user: ApiUser, task_id: str, execution_id: str
) -> dict[str, Any]:
    for _ in range(200):
        listing = await client.get(f"/api/v1/tasks/{task_id}/executions", headers=user.headers)
        found = [e for e in listing.json()["items"] if e["id"] == execution_id]
        if found and found[0]["status"] in ("success", "failed"):
            execution: dict[str, Any] = found[0]
            return execution
        await asyncio.sleep(0.05)
    raise AssertionError(f"execution {execution_id} did not finish")


def any_uuid() -> str:
    return str(uuid.uuid4())
