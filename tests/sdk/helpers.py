"""Small helpers shared by the SDK tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

QUERY = "When is the next iPhone release?"
CONDITION = "Apple has announced a specific date"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def wait_until(probe: Callable[[], T | None], *, timeout: float = 15.0, what: str = "") -> T:
    """Call `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or probe}")
        time.sleep(0.05)


async def await_until(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 15.0, what: str = ""
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or probe}")
        await asyncio.sleep(0.05)
