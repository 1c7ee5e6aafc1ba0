"""Calling a search API over HTTP: retries for transient failures, clear errors for the rest."""

from __future__ import annotations

from typing import Any

import httpx

from torale.engine.retry import (
    TransientError,
    is_transient_status,
    retry_after_seconds,
    with_retries,
)
from torale.engine.search.base import SearchError


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    retries: int,
    backoff: float,
    key_setting: str | None = None,
    url_setting: str | None = None,
    **kwargs: Any,
) -> Any:
    """The JSON answer of one request to a search API. Failures are SearchErrors that name the
    provider and, where it helps, the setting to check; never the request's URL (it carries
    the user's query)."""

    async def attempt() -> Any:
        response = await client.request(method, url, **kwargs)
        if is_transient_status(response.status_code):
            raise TransientError(
                f"HTTP {response.status_code}", retry_after=retry_after_seconds(response)
            )
        return response

    try:
        response = await with_retries(attempt, retries=retries, backoff=backoff)
    except TransientError as exc:
        raise SearchError(
            f"Search provider {provider} is unavailable ({exc}) after {retries + 1} attempts"
        ) from exc
    except httpx.TimeoutException as exc:
        raise SearchError(
            f"Search provider {provider} did not answer in time after {retries + 1} attempts"
        ) from exc
    except httpx.TransportError as exc:
        check = f": check {url_setting} and that this server can reach it" if url_setting else ""
        raise SearchError(
            f"Cannot reach search provider {provider} ({type(exc).__name__}){check}"
        ) from exc
    if response.status_code in (401, 403) and key_setting:
        raise SearchError(
            f"Search provider {provider} refused the API key (HTTP {response.status_code}): "
            f"check {key_setting}"
        )
    if response.status_code >= 400:
        raise SearchError(
            f"Search provider {provider} refused the search (HTTP {response.status_code})"
        )
    try:
        return response.json()
    except ValueError:
        raise SearchError(
            f"Search provider {provider} answered with something other than JSON"
        ) from None
