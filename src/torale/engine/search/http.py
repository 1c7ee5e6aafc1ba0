"""Calling a search API over HTTP: retries for transient failures, clear errors for the rest.

Each attempt has one deadline for the whole exchange (connecting, sending, every read), and an
answer is read no further than MAX_ANSWER_BYTES (an error answer not at all).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from torale.engine.retry import (
    TransientError,
    is_transient_status,
    retry_after_seconds,
    with_retries,
)
from torale.engine.search.base import SearchError
from torale.net import ResponseTooLargeError, read_limited

MAX_ANSWER_BYTES = 1_000_000  # a page of search results is a few KB


class _NoAnswerError(TransientError):
    """The attempt's deadline passed."""


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    retries: int,
    backoff: float,
    deadline: float,
    key_setting: str | None = None,
    url_setting: str | None = None,
    **kwargs: Any,
) -> Any:
    """The JSON answer of one request to a search API. Failures are SearchErrors that name the
    provider and, where it helps, the setting to check; never the request's URL (it carries
    the user's query)."""

    async def attempt() -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(deadline), client.stream(method, url, **kwargs) as response:
                status = response.status_code
                if is_transient_status(status):
                    raise TransientError(
                        f"HTTP {status}", retry_after=retry_after_seconds(response)
                    )
                if status >= 400:
                    return status, b""
                return status, await read_limited(response, MAX_ANSWER_BYTES)
        except TimeoutError:
            raise _NoAnswerError(f"no answer within {deadline:g} s") from None

    try:
        status, body = await with_retries(attempt, retries=retries, backoff=backoff)
    except (_NoAnswerError, httpx.TimeoutException) as exc:
        raise SearchError(
            f"Search provider {provider} did not answer in time after {retries + 1} attempts"
        ) from exc
    except TransientError as exc:
        raise SearchError(
            f"Search provider {provider} is unavailable ({exc}) after {retries + 1} attempts"
        ) from exc
    except httpx.TransportError as exc:
        check = f": check {url_setting} and that this server can reach it" if url_setting else ""
        raise SearchError(
            f"Cannot reach search provider {provider} ({type(exc).__name__}){check}"
        ) from exc
    except ResponseTooLargeError:
        raise SearchError(
            f"Search provider {provider} answered with more than {MAX_ANSWER_BYTES} bytes"
        ) from None
    if status in (401, 403) and key_setting:
        raise SearchError(
            f"Search provider {provider} refused the API key (HTTP {status}): check {key_setting}"
        )
    if status >= 400:
        raise SearchError(f"Search provider {provider} refused the search (HTTP {status})")
    try:
        return json.loads(body)
    except ValueError:
        raise SearchError(
            f"Search provider {provider} answered with something other than JSON"
        ) from None
