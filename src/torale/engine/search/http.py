"""Calling a search API over HTTP: retries for transient failures, clear errors for the rest.

Requests go through the outbound policy (`search_client`): the hosts of the search URLs the
operator configured are trusted by name, so an intranet SearXNG works without opening private
networks to the URLs users type; a redirect is followed only to an allowed place (each hop
checked), and a refusal fails the search without naming an address. Each attempt has one
deadline for the whole exchange (connecting, sending, every read), and an answer is read no
further than MAX_ANSWER_BYTES (an error answer not at all).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from torale.config import Settings
from torale.engine.retry import (
    TransientError,
    is_transient_status,
    retry_after_seconds,
    with_retries,
)
from torale.engine.search.base import SearchError
from torale.net import (
    OutboundPolicy,
    ResponseTooLargeError,
    UnsafeURLError,
    guarded_client,
    read_limited,
)

logger = logging.getLogger("torale.engine.search")

MAX_ANSWER_BYTES = 1_000_000  # a page of search results is a few KB
MAX_REDIRECTS = 3  # e.g. http to https, a trailing slash; each hop checked by the policy


def search_client(settings: Settings) -> httpx.AsyncClient:
    """The client every search API request goes through (`purpose="search"` policy)."""
    policy = OutboundPolicy.from_settings(settings, purpose="search")
    return guarded_client(
        policy, timeout=settings.fetch_timeout_seconds, max_redirects=MAX_REDIRECTS
    )


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
    except UnsafeURLError as exc:
        # Where it went is the operator's business (the log), not the user's (the message).
        logger.warning(
            "search provider %s refused by the outbound policy: %s",
            provider,
            exc.detail,
        )
        check = f": check {url_setting}" if url_setting else ""
        raise SearchError(f"Search provider {provider} failed: {exc.refusal}{check}") from exc
    except httpx.TooManyRedirects:
        raise SearchError(
            f"Search provider {provider} failed: more than {MAX_REDIRECTS} redirects"
        ) from None
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
