"""Shared pieces of the failure drills: traffic recording, polling, and the engine's fakes.

Every drill takes a dependency away while Torale is working, gives it back, and checks what the
README promises for that failure. Each one starts its own processes and services (on free
ports, in the test's tmp dir) and stops them in teardown, also when the test fails.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
KEY_LINE_RE = re.compile(r"^\s*(sk_[A-Za-z0-9_-]{43})\s*$", re.MULTILINE)

# What an API route answers while the database cannot be reached (src/torale/errors.py).
DATABASE_UNAVAILABLE = {"detail": "The database is unavailable; try again shortly"}
# A write whose COMMIT was on its way when the database went: it may or may not have happened.
OUTCOME_UNKNOWN = {
    "detail": "The database stopped answering while this change was being saved: it may or may "
    "not have been saved. Check before sending it again."
}


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, seconds: float, what: str, every: float = 0.1
) -> T:
    """Poll `check` until it returns something other than None, within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(every)


def bootstrap_key(stdout_path: Path) -> str:
    """The admin key `torale serve` prints once on its first start with an empty database."""
    found = KEY_LINE_RE.search(stdout_path.read_text(errors="replace"))
    assert found, f"no bootstrap key in the server's output:\n{stdout_path.read_text()}"
    return found.group(1)


@dataclass(frozen=True)
class Exchange:
    """One request of the drill's traffic and what came back (status 0: no answer at all)."""

    op: str
    method: str
    path: str
    started: float  # time.monotonic()
    ended: float
    status: int
    body: Any
    headers: dict[str, str]
    sent: dict[str, Any] | None = None  # the JSON body sent, if any
    error: str | None = None  # the transport error, if the request got no answer

    def during(self, start: float, end: float) -> bool:
        """Sent after `start` and answered before `end`."""
        return self.started >= start and self.ended <= end

    def __str__(self) -> str:
        detail = self.error or str(self.body)[:200]
        return f"{self.op} {self.method} {self.path} -> {self.status} {detail}"


@dataclass
class Traffic:
    """Requests sent by concurrent workers, every one of them recorded."""

    client: httpx.AsyncClient
    exchanges: list[Exchange] = field(default_factory=list)

    async def send(
        self, op: str, method: str, path: str, *, json: dict[str, Any] | None = None, **kw: Any
    ) -> Exchange:
        started = time.monotonic()
        try:
            response = await self.client.request(method, path, json=json, **kw)
        except httpx.HTTPError as exc:
            exchange = Exchange(
                op, method, path, started, time.monotonic(), 0, None, {}, json, repr(exc)
            )
        else:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            exchange = Exchange(
                op,
                method,
                path,
                started,
                time.monotonic(),
                response.status_code,
                body,
                dict(response.headers),
                json,
            )
        self.exchanges.append(exchange)
        return exchange

    def between(self, start: float, end: float) -> list[Exchange]:
        return [e for e in self.exchanges if e.during(start, end)]

    def statuses(self, exchanges: list[Exchange] | None = None) -> dict[int, int]:
        counts: dict[int, int] = {}
        for exchange in self.exchanges if exchanges is None else exchanges:
            counts[exchange.status] = counts.get(exchange.status, 0) + 1
        return counts


async def keep_sending(
    stop: asyncio.Event, workers: int, step: Callable[[int, int], Awaitable[object]]
) -> None:
    """Run `step(worker, n)` in a loop on `workers` concurrent workers until `stop` is set."""

    async def loop(worker: int) -> None:
        n = 0
        while not stop.is_set():
            await step(worker, n)
            n += 1
            await asyncio.sleep(0.01)

    await asyncio.gather(*(loop(w) for w in range(workers)))
