"""Retries of transient provider failures: timeouts, connection errors, 429 and 5xx.

Capped exponential backoff with jitter, honouring a server's Retry-After (within the cap).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from torale.retry_after import parse_retry_after

T = TypeVar("T")
MAX_BACKOFF_SECONDS = 30.0


class TransientError(Exception):
    """A failure worth retrying; `retry_after` is the server's hint, in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def is_transient_status(status: int) -> bool:
    return status == 429 or status >= 500


def retry_after_seconds(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"))


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | httpx.TimeoutException | httpx.TransportError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return is_transient_status(exc.response.status_code)
    return False


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    retries: int,
    backoff: float,
    transient: Callable[[BaseException], bool] = is_transient,
) -> T:
    """`call()`, retried up to `retries` times on transient errors; the last error is raised."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None)
        delay = backoff * 2 ** (state.attempt_number - 1)
        delay = hint if isinstance(hint, int | float) else delay * random.uniform(0.8, 1.2)  # noqa: S311
        return float(min(delay, MAX_BACKOFF_SECONDS))

    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait,
        retry=retry_if_exception(transient),
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover
