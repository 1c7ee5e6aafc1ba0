"""One request to the API, with the SDK's retry policy, for the sync and async clients.

Transient failures are retried with capped exponential backoff (honouring Retry-After): a
connection that could not be made, 429, 503, and for idempotent methods 502 and 504 as well
(a POST that may have been carried out is not sent twice).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import TypeAdapter

from torale import __version__
from torale.retry_after import parse_retry_after
from torale.sdk.errors import APIConnectionError, AuthenticationError, error_for

T = TypeVar("T")
MAX_BACKOFF = 30.0
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD", "OPTIONS"})
NO_API_KEY = (
    "No API key was given: pass Torale(api_key=...), set TORALE_API_KEY, or save one with "
    "`torale auth set-api-key`"
)


@dataclass(frozen=True)
class Call(Generic[T]):
    """An API request and how to read its answer (`model`: the type `parse` makes, for the
    contract test against the server's OpenAPI document; None when the body is not read)."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    model: Any = None


@functools.cache
def _adapter(model: Any) -> TypeAdapter[Any]:
    # Building an adapter (~0.1 ms) costs more than parsing an answer: once per model.
    return TypeAdapter(model)


def call(method: str, path: str, model: Any, **kwargs: Any) -> Call[Any]:
    params = {k: v for k, v in kwargs.pop("params", {}).items() if v is not None}
    return Call(method, path, _adapter(model).validate_python, params=params, model=model, **kwargs)


def ignore_body(_: Any) -> None:
    """For answers the SDK does not read (204 No Content, `{"status": "revoked"}`)."""
    return None


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"))


@dataclass
class Policy:
    api_key: str | None
    max_retries: int = 3
    backoff: float = 0.5

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"torale-sdk/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def retry_delay(
        self,
        method: str,
        attempt: int,
        response: httpx.Response | None,
        error: httpx.TransportError | None = None,
    ) -> float | None:
        """Seconds to wait before trying again, or None to stop."""
        if attempt >= self.max_retries:
            return None
        # A timeout or a dropped connection may come after the server acted on the request:
        # only an idempotent one is sent again (a connection never made is always safe).
        reached = error is not None and not isinstance(
            error, httpx.ConnectError | httpx.ConnectTimeout
        )
        if reached and method not in _IDEMPOTENT:
            return None
        if response is not None:
            status = response.status_code
            retryable = status in (429, 503) or (status in (502, 504) and method in _IDEMPOTENT)
            if not retryable:
                return None
            hint = _retry_after(response)
            if hint is not None:
                return min(hint, MAX_BACKOFF)
        return float(min(self.backoff * 2.0**attempt, MAX_BACKOFF))

    def result(self, call: Call[T], response: httpx.Response) -> T:
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            if response.status_code == 401 and not self.api_key:
                raise AuthenticationError(NO_API_KEY, status_code=401, body=body)
            raise error_for(response.status_code, body, _retry_after(response))
        if response.status_code == 204 or not response.content:
            return call.parse(None)
        return call.parse(response.json())


def _transport_message(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f"Cannot reach the Torale API ({type(exc).__name__})"
    if isinstance(exc, httpx.TimeoutException):
        return "The Torale API did not answer in time (the request may have been carried out)"
    return f"The connection to the Torale API failed ({type(exc).__name__})"


def send(client: httpx.Client, policy: Policy, call: Call[T]) -> T:
    attempt = 0
    while True:
        try:
            response = client.request(call.method, call.path, params=call.params, json=call.json)
        except httpx.TransportError as exc:
            delay = policy.retry_delay(call.method, attempt, None, exc)
            if delay is None:
                raise APIConnectionError(_transport_message(exc)) from exc
        else:
            delay = policy.retry_delay(call.method, attempt, response)
            if delay is None:
                return policy.result(call, response)
        time.sleep(delay)
        attempt += 1


async def asend(client: httpx.AsyncClient, policy: Policy, call: Call[T]) -> T:
    attempt = 0
    while True:
        try:
            response = await client.request(
                call.method, call.path, params=call.params, json=call.json
            )
        except httpx.TransportError as exc:
            delay = policy.retry_delay(call.method, attempt, None, exc)
            if delay is None:
                raise APIConnectionError(_transport_message(exc)) from exc
        else:
            delay = policy.retry_delay(call.method, attempt, response)
            if delay is None:
                return policy.result(call, response)
        await asyncio.sleep(delay)
        attempt += 1
