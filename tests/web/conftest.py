"""Web app tests: pages through httpx against the app in process (SQLite only: the pages add no
SQL of their own beyond the services, which tests/ runs on both databases), and browser
journeys through Debian's Chromium against a real `torale serve` (test_browser.py)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import ApiUser, create_test_user
from tests.fakes import FakeOpenAI, FakeSearxng, FakeWeb, WebhookReceiver, verdict_rules
from tests.web.stage import MET, NOT_MET
from torale.auth import sessions
from torale.db import migrate
from torale.state import AppState
from torale.web import csrf

BASE_URL = "http://torale.test"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('web') / 'torale.db'}"
    asyncio.run(migrate.upgrade(url))
    return url


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


@dataclass
class Browserless:
    """A signed-in browser, as httpx: its session cookie and the CSRF token its pages carry."""

    client: httpx.AsyncClient
    user: ApiUser
    session_token: str
    csrf_token: str

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, htmx: bool = False, **kwargs: Any
    ) -> httpx.Response:
        form = {"csrf_token": self.csrf_token, **(data or {})}
        headers = {"HX-Request": "true"} if htmx else {}
        headers.update(kwargs.pop("headers", {}))
        return await self.client.post(path, data=form, headers=headers, **kwargs)


async def sign_in(app: FastAPI, user: ApiUser) -> Browserless:
    """A browser signed in as `user` (a session made as sign-in makes it)."""
    state: AppState = app.state.torale
    async with state.sessions() as session:
        token = await sessions.start(
            session,
            user_id=user.id,
            hashing_key=state.hashing_key,
            policy=sessions.SessionPolicy.from_settings(state.settings),
        )
        await session.commit()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=BASE_URL,
        cookies={sessions.COOKIE_NAME: token},
    )
    return Browserless(client, user, token, csrf.token_for(token, state.hashing_key))


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


async def api_task(client: httpx.AsyncClient, user: ApiUser, **body: Any) -> dict[str, Any]:
    body.setdefault("search_query", "When is the next iPhone release?")
    body.setdefault("condition_description", "Apple has announced a specific date")
    response = await client.post("/api/v1/tasks", json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def any_uuid() -> str:
    return str(uuid.uuid4())


def chromium_path() -> Path:
    from tests.web.stage import CHROMIUM

    return Path(CHROMIUM)
