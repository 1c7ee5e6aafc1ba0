"""Rate limits (docs/api.md §3) in one process: memory storage, and Redis shared by two apps.

The two-process proof (150 concurrent requests across two servers → exactly 100 pass) is in
tests/e2e/test_serve.py.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select

from tests.fixtures.users import ApiUser, create_test_user
from torale.app import create_app
from torale.auth.keys import hash_api_key
from torale.config import Settings
from torale.db.models import ApiKey
from torale.ratelimit import RateLimiter, parse_rate_limits

ME = "/auth/me"


def assert_headers(response: httpx.Response, limit: int, remaining: int) -> None:
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == str(remaining)
    reset = int(response.headers["x-ratelimit-reset"])
    assert time.time() - 1 <= reset <= time.time() + 3600 * 24 + 1


async def test_default_windows_and_headers(client: httpx.AsyncClient, alice: ApiUser) -> None:
    first = await client.get(ME, headers=alice.headers)
    assert_headers(first, 100, 99)
    assert int(first.headers["x-ratelimit-reset"]) <= time.time() + 61
    # Errors of authenticated requests carry the headers too.
    missing = await client.get(f"/api/v1/tasks/{uuid.uuid4()}", headers=alice.headers)
    assert missing.status_code == 404
    assert_headers(missing, 100, 98)
    invalid = await client.post("/api/v1/tasks", json={}, headers=alice.headers)
    assert invalid.status_code == 422
    assert_headers(invalid, 100, 97)
    # Unauthenticated routes carry none.
    assert "x-ratelimit-limit" not in (await client.get("/health")).headers


@pytest.mark.parametrize("settings_overrides", [{"rate_limits": "3/minute;5/hour;100/day"}])
async def test_429_after_the_limit(app: FastAPI, client: httpx.AsyncClient, alice: ApiUser) -> None:
    for remaining in (2, 1, 0):
        response = await client.get(ME, headers=alice.headers)
        assert response.status_code == 200
        assert_headers(response, 3, remaining)
    refused = await client.get(ME, headers=alice.headers)
    assert refused.status_code == 429
    assert refused.json() == {"detail": "Rate limit exceeded: 3 per 1 minute"}
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert_headers(refused, 3, 0)

    # Another key has its own budget.
    other = await client.post("/auth/api-keys", json={"name": "b"}, headers=alice.headers)
    assert other.status_code == 429  # alice's first key is exhausted...
    bob = await create_test_user(app, "bob@example.com")
    assert (await client.get(ME, headers=bob.headers)).status_code == 200  # ...bob's is not


async def key_id_of(app: FastAPI, key: str) -> uuid.UUID:
    async with app.state.torale.sessions() as session:
        key_id: uuid.UUID | None = await session.scalar(
            select(ApiKey.id).where(
                ApiKey.key_hash == hash_api_key(key, app.state.torale.hashing_key)
            )
        )
    assert key_id is not None
    return key_id


@pytest.mark.parametrize("settings_overrides", [{"rate_limits": "2/minute;3/hour"}])
async def test_refused_requests_do_not_use_longer_windows(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    statuses = [(await client.get(ME, headers=alice.headers)).status_code for _ in range(7)]
    assert statuses == [200, 200, 429, 429, 429, 429, 429]
    limiter: RateLimiter = app.state.torale.rate_limiter
    hour = next(item for item in limiter.items if item.get_expiry() == 3600)
    key_id = await key_id_of(app, alice.key)
    assert await limiter.storage.get(hour.key_for(f"key:{key_id}")) == 2


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def test_redis_budget_is_shared_by_two_app_instances(
    settings: Settings, redis_url: str, alice: ApiUser
) -> None:
    shared = settings.model_copy(update={"redis_url": redis_url, "rate_limits": "5/minute"})
    async with serving(shared) as one, serving(shared) as two:
        statuses = []
        for i in range(10):
            response = await (one if i % 2 else two).get(ME, headers=alice.headers)
            statuses.append(response.status_code)
    assert statuses.count(200) == 5
    assert statuses.count(429) == 5


async def test_memory_budgets_are_per_process(settings: Settings, alice: ApiUser) -> None:
    # The contrast that makes the Redis test meaningful: without Redis each app counts alone.
    local = settings.model_copy(update={"rate_limits": "5/minute"})
    async with serving(local) as one, serving(local) as two:
        statuses = [
            (await (one if i % 2 else two).get(ME, headers=alice.headers)).status_code
            for i in range(10)
        ]
    assert statuses.count(200) == 10


async def test_unreachable_redis_fails_open_with_a_warning(
    settings: Settings, alice: ApiUser, caplog: pytest.LogCaptureFixture
) -> None:
    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    caplog.set_level(logging.WARNING, logger="torale.ratelimit")
    async with serving(broken) as client:
        responses = [await client.get(ME, headers=alice.headers) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert all("x-ratelimit-limit" not in r.headers for r in responses)
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not per request


@pytest.mark.parametrize("spec", ["banana", "10/fortnight", "", ";"])
def test_bad_rate_limit_setting_is_refused_clearly(spec: str) -> None:
    with pytest.raises(ValueError, match="TORALE_RATE_LIMITS"):
        parse_rate_limits(spec)


def test_windows_are_ordered_shortest_first() -> None:
    items = parse_rate_limits("10000/day;100/minute;1000/hour")
    assert [i.get_expiry() for i in items] == [60, 3600, 86400]
