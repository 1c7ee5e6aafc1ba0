"""Web app tests: pages through httpx against the app in process (SQLite only: the pages add no
SQL of their own beyond the services, which tests/ runs on both databases), and browser
journeys through Debian's Chromium against a real `torale serve` (test_browser.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fakes import FakeOpenAI, FakeSearxng, FakeWeb, WebhookReceiver, verdict_rules
from tests.fixtures.engine import MET, NOT_MET, fake_model, fake_search, fake_web  # noqa: F401 - shared fakes
from tests.fixtures.users import ApiUser, create_test_user
from tests.fixtures.web import BASE_URL, Browserless, sign_in
from torale.db import migrate


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('web') / 'torale.db'}"
    asyncio.run(migrate.upgrade(url))
    return url


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_fakes(
    fake_model: FakeOpenAI, fake_search: FakeSearxng, fake_web: FakeWeb, receiver: WebhookReceiver
) -> None:
    for fake in (fake_model, fake_search, fake_web, receiver):
        fake.reset()
    fake_search.clear_results()
    fake_model.script = verdict_rules([("announced", MET)], NOT_MET)


@pytest.fixture
def settings_overrides(fake_model: FakeOpenAI, fake_search: FakeSearxng) -> dict[str, Any]:
    return {
        "model": "fake-model",
        "openai_base_url": fake_model.url + "/v1",
        "search_provider": "searxng",
        "searxng_url": fake_search.url,
        "allowed_networks": "127.0.0.1/32",
        "allow_http_webhooks": True,
        "provider_retries": 0,
        "run_timeout_seconds": 15,
        "public_url": BASE_URL,
    }


@pytest.fixture
async def as_alice(app: FastAPI, alice: ApiUser) -> AsyncIterator[Browserless]:
    browser = await sign_in(app, alice)
    async with browser.client:
        yield browser


@pytest.fixture
async def as_bob(app: FastAPI, bob: ApiUser) -> AsyncIterator[Browserless]:
    browser = await sign_in(app, bob)
    async with browser.client:
        yield browser


@pytest.fixture
async def as_admin(app: FastAPI) -> AsyncIterator[Browserless]:
    admin = await create_test_user(app, "root@example.com", role="admin")
    browser = await sign_in(app, admin)
    async with browser.client:
        yield browser


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL
    ) as client:
        yield client
