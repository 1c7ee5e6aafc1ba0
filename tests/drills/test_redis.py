"""Drill: the Redis that holds the rate-limit counters goes away under traffic, then comes back.

The README: "If Redis cannot be reached, requests are let through unlimited and a warning is
logged (at most once a minute) rather than failing every request." The drill runs its own
`redis-server` on a free port (never the machine's shared one), and the API with
`TORALE_REDIS_URL` pointing at it. Under concurrent traffic, Redis is

* `killed` (SIGKILL: connections reset, the port refuses), then started again on the same port
  (empty, as a Redis without persistence comes back); or
* `frozen` (SIGSTOP: connections stay open and nothing answers, as a Redis stuck on a slow disk
  or a partition), then thawed (SIGCONT).

While it is gone every request is served (200, unlimited, without rate-limit headers) and
promptly — never a 500 or a 503 — and the warning is logged once, and not again for a second
outage in the same minute. When it is back the limits apply again, exactly.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI

from tests.fixtures.drills import Exchange, Traffic, eventually, keep_sending
from tests.fixtures.processes import free_port
from tests.fixtures.services import require_service
from tests.fixtures.users import ApiUser, create_test_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(40),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),  # plays no part
]

LIMIT = 10  # requests a minute per key
WORKERS = 4
OUTAGE_SECONDS = 5.0  # two rounds of 2 s timeouts, when frozen
ANSWER_WITHIN = 3.0  # Torale's Redis client gives up after 2 s
WARNING = "rate-limit store unreachable"


@dataclass
class RedisServer:
    """A `redis-server` of the test's own, on a free port, without persistence."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start on {self.port}: "
                        + (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    ) from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen one must be able to die
            self.process.kill()
            self.process.wait(5)

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        require_service("Redis", "no redis-server binary to run a Redis of the drill's own")
        raise AssertionError("unreachable")  # require_service skips or fails
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def settings_overrides(own_redis: RedisServer) -> dict[str, Any]:
    return {"redis_url": own_redis.url, "rate_limits": f"{LIMIT}/minute"}


@pytest.fixture
async def raw_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI, as a server would run it: an error becomes a 500, not an exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://torale.test") as c:
        yield c


def limited(exchange: Exchange) -> bool:
    """Counted against a limit: the answer carries the rate-limit headers."""
    return "x-ratelimit-limit" in exchange.headers


async def exactly_the_limit(traffic: Traffic, user: ApiUser, op: str) -> list[int]:
    """LIMIT + 2 requests of a fresh key, one after the other: their statuses."""
    statuses = []
    for _ in range(LIMIT + 2):
        exchange = await traffic.send(op, "GET", "/auth/me", headers=user.headers)
        statuses.append(exchange.status)
    return statuses


@pytest.mark.parametrize("outage", ["killed", "frozen"])
async def test_requests_pass_unlimited_while_redis_is_gone_and_limits_apply_again_after(
    outage: str,
    app: FastAPI,
    raw_client: httpx.AsyncClient,
    alice: ApiUser,
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="torale.ratelimit")
    traffic = Traffic(raw_client)

    # Redis up: the limit holds, and the counters are in this Redis.
    assert await exactly_the_limit(traffic, alice, "before") == [200] * LIMIT + [429] * 2
    assert own_redis.client().keys("*"), "no rate-limit counter in the drill's Redis"

    users = [await create_test_user(app, f"user{i}@example.com") for i in range(WORKERS)]

    async def step(worker: int, n: int) -> None:
        user = users[worker] if n % 2 else alice  # alice is over her limit already
        await traffic.send("traffic", "GET", "/auth/me", headers=user.headers)

    def stop_redis() -> None:
        if outage == "killed":
            own_redis.kill()
        else:
            own_redis.signal(signal.SIGSTOP)

    def start_redis() -> None:
        if outage == "killed":
            own_redis.start()
        else:
            own_redis.signal(signal.SIGCONT)

    stop = asyncio.Event()
    sending = asyncio.create_task(keep_sending(stop, WORKERS, step))
    windows: list[tuple[float, float]] = []
    try:
        await asyncio.sleep(0.5)
        for _ in range(2):  # two outages within a minute: one warning
            await asyncio.to_thread(stop_redis)
            gone = time.monotonic()
            await asyncio.sleep(OUTAGE_SECONDS)
            back = time.monotonic()
            await asyncio.to_thread(start_redis)
            windows.append((gone, back))

            async def limited_again(since: float = back) -> Exchange | None:
                found = [e for e in traffic.exchanges if e.started >= since and limited(e)]
                return found[0] if found else None

            await eventually(limited_again, seconds=10, what="rate-limit headers again")
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await sending

    problems: list[str] = []
    everything = traffic.exchanges
    bad = [e for e in everything if e.status not in (200, 429)]
    if bad:
        problems.append(f"answers other than 200/429 {traffic.statuses()}: {bad[:5]}")
    slow = [e for e in everything if e.ended - e.started > ANSWER_WITHIN]
    if slow:
        worst = max(e.ended - e.started for e in slow)
        problems.append(f"{len(slow)} answers slower than {ANSWER_WITHIN} s (worst {worst:.1f})")
    for gone, back in windows:
        during = traffic.between(gone, back)  # sent once it was gone, answered before back
        if len(during) < WORKERS:
            problems.append(f"too little traffic while Redis was away: {len(during)}")
        if any(e.status != 200 for e in during):
            problems.append(f"refused while Redis was away: {traffic.statuses(during)}")
        if any(limited(e) for e in during):
            problems.append("rate-limit headers while Redis was away")
    warnings = [r for r in caplog.records if WARNING in r.getMessage()]
    if len(warnings) != 1:
        problems.append(f"{len(warnings)} warnings for two outages within a minute, not one")
    assert not problems, "\n".join(problems)

    # Redis back: the limit holds again, exactly, for a key that had no count yet.
    fresh = await create_test_user(app, "fresh@example.com")
    assert await exactly_the_limit(traffic, fresh, "after") == [200] * LIMIT + [429] * 2
    assert all(limited(e) for e in traffic.exchanges if e.op == "after")
