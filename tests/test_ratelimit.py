"""Rate limits in one process: memory storage, and Redis shared by two app instances; the
budget is per user, failed authentication is throttled per client address, and a Redis that
does not answer is skipped for a while (the circuit breaker).

The two-process proof (150 concurrent requests across two servers → exactly 100 pass) is in
tests/e2e/test_serve.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import redis
from fastapi import FastAPI

from tests.fakes.silent import SilentServer
from tests.fixtures.lifespan import lifespan
from tests.fixtures.users import ApiUser, create_test_user
from torale.app import create_app
from torale.config import Settings
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

    other = await client.post("/auth/api-keys", json={"name": "b"}, headers=alice.headers)
    assert other.status_code == 429  # alice's budget is exhausted...
    bob = await create_test_user(app, "bob@example.com")
    assert (await client.get(ME, headers=bob.headers)).status_code == 200  # ...bob's is not


@pytest.mark.parametrize("settings_overrides", [{"rate_limits": "4/minute"}])
async def test_all_keys_of_a_user_share_one_budget(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    made = await client.post("/auth/api-keys", json={"name": "second"}, headers=alice.headers)
    second = {"Authorization": f"Bearer {made.json()['key']}"}
    assert made.headers["x-ratelimit-remaining"] == "3"
    assert (await client.get(ME, headers=second)).headers["x-ratelimit-remaining"] == "2"
    assert (await client.get(ME, headers=alice.headers)).headers["x-ratelimit-remaining"] == "1"
    assert (await client.get(ME, headers=second)).status_code == 200
    # Both keys are out now: a third key would not help either.
    assert (await client.get(ME, headers=alice.headers)).status_code == 429
    assert (await client.get(ME, headers=second)).status_code == 429
    limiter: RateLimiter = app.state.torale.rate_limiter
    assert await limiter.storage.get(limiter.items[0].key_for(f"user:{alice.id}")) == 6


@pytest.mark.parametrize("settings_overrides", [{"rate_limits": "2/minute;3/hour"}])
async def test_refused_requests_do_not_use_longer_windows(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    statuses = [(await client.get(ME, headers=alice.headers)).status_code for _ in range(7)]
    assert statuses == [200, 200, 429, 429, 429, 429, 429]
    limiter: RateLimiter = app.state.torale.rate_limiter
    hour = next(item for item in limiter.items if item.get_expiry() == 3600)
    assert await limiter.storage.get(hour.key_for(f"user:{alice.id}")) == 2


@asynccontextmanager
async def serving(
    settings: Settings, address: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with lifespan(app), calling(app, address) as client:
        yield client


@asynccontextmanager
async def calling(app: FastAPI, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests come from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
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


# --- failed authentication, per client address ------------------------------------------

BAD_KEY = {"Authorization": "Bearer sk_" + "x" * 43}


@pytest.mark.parametrize("settings_overrides", [{"auth_failure_limits": "3/minute"}])
async def test_failed_authentication_is_throttled_per_address(app: FastAPI, alice: ApiUser) -> None:
    async with calling(app, "203.0.113.7") as attacker, calling(app, "198.51.100.1") as other:
        assert [(await attacker.get(ME, headers=BAD_KEY)).status_code for _ in range(3)] == [
            401
        ] * 3
        refused = await attacker.get(ME, headers=BAD_KEY)
        assert refused.status_code == 429
        assert refused.json()["detail"].startswith("Too many failed authentication attempts")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Until the window ends the address is refused before its credentials are looked at.
        assert (await attacker.get(ME, headers=alice.headers)).status_code == 429
        assert (await attacker.get("/api/v1/tasks", headers=alice.headers)).status_code == 429
        # Other addresses are not: their keys work, their failures are their own.
        assert (await other.get(ME, headers=alice.headers)).status_code == 200
        assert (await other.get(ME, headers=BAD_KEY)).status_code == 401


@pytest.mark.parametrize("settings_overrides", [{"auth_failure_limits": "2/minute"}])
async def test_requests_without_credentials_and_good_ones_are_no_failures(
    app: FastAPI, alice: ApiUser
) -> None:
    async with calling(app, "203.0.113.8") as caller:
        for _ in range(5):
            assert (await caller.get(ME)).status_code == 401
            assert (await caller.get(ME, headers=alice.headers)).status_code == 200
        assert (await caller.get(ME, headers=BAD_KEY)).status_code == 401
        assert (await caller.get(ME, headers=BAD_KEY)).status_code == 401
        assert (await caller.get(ME, headers=BAD_KEY)).status_code == 429


async def test_the_failure_budget_is_shared_through_redis(
    settings: Settings, redis_url: str, alice: ApiUser
) -> None:
    shared = settings.model_copy(update={"redis_url": redis_url, "auth_failure_limits": "4/minute"})
    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    async with serving(shared, address) as one, serving(shared, address) as two:
        await redis_forget(redis_url, address)
        statuses = [
            (await (one if i % 2 else two).get(ME, headers=BAD_KEY)).status_code for i in range(6)
        ]
    assert statuses == [401, 401, 401, 401, 429, 429]


async def redis_forget(redis_url: str, address: str) -> None:
    """Drop the failure counters of `address` another test run may have left in Redis."""
    client = redis.Redis.from_url(redis_url)
    try:
        for name in client.scan_iter(f"*auth-failure:{address}*"):
            client.delete(name)
    finally:
        client.close()


# --- a Redis that accepts connections and never answers ---------------------------------


async def test_a_redis_that_never_answers_is_not_asked_again_at_once(
    settings: Settings, alice: ApiUser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="torale.ratelimit")
    with SilentServer() as silent:
        stuck = settings.model_copy(update={"redis_url": silent.url})
        async with serving(stuck) as client:
            first = await client.get(ME, headers=alice.headers)
            assert first.status_code == 200  # fails open, after Redis's timeout
            assert "x-ratelimit-limit" not in first.headers
            asked = silent.asked()
            assert asked[0] >= 1  # it was asked, once
            later = [await client.get(ME, headers=alice.headers) for _ in range(5)]
            assert [r.status_code for r in later] == [200] * 5
            assert silent.asked() == asked  # not a connection, not a byte more
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


async def test_the_breaker_asks_again_in_the_background_and_closes(redis_url: str) -> None:
    limiter = RateLimiter(
        "5/minute", redis_url, key_prefix=f"torale-test-{uuid.uuid4().hex}", redis_retry_seconds=0.2
    )
    try:
        identity = f"user:{uuid.uuid4()}"
        limiter.breaker.failed()  # as if Redis had just failed
        assert await limiter.hit(identity) is None  # open: not asked
        await asyncio.sleep(0.25)
        assert await limiter.hit(identity) is None  # due: a probe starts; this one passes
        await wait_for(lambda: limiter.breaker.allows())
        counted = await limiter.hit(identity)
        assert counted is not None
        assert counted.remaining == 4  # the requests that passed while open were not counted
    finally:
        await limiter.close()


async def test_a_probe_that_fails_keeps_the_breaker_open() -> None:
    with SilentServer() as silent:
        limiter = RateLimiter("5/minute", silent.url, redis_timeout=0.2, redis_retry_seconds=0.1)
        try:
            assert await limiter.hit("user:x") is None  # times out, opens
            await asyncio.sleep(0.15)
            assert await limiter.hit("user:x") is None  # starts the probe, does not wait
            await asyncio.sleep(0.4)  # the probe times out
            assert not limiter.breaker.allows()
        finally:
            await limiter.close()


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
