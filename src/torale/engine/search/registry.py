"""Which search provider a run uses: the task's `config.search_provider`, else the setting."""

from __future__ import annotations

import httpx

from torale.config import Settings
from torale.engine.search.base import SearchError, SearchProvider
from torale.engine.search.providers import (
    BraveSearch,
    DuckDuckGoSearch,
    NoSearch,
    SearxngSearch,
    TavilySearch,
)


def search_provider(
    name: str | None, settings: Settings, client: httpx.AsyncClient
) -> SearchProvider:
    """The provider called `name` (default: the server's). SearchError if it is not configured."""
    chosen = name or settings.search_provider
    retries, backoff = settings.provider_retries, settings.retry_backoff_seconds
    if chosen == "searxng":
        if not settings.searxng_url:
            raise SearchError("Search provider searxng needs TORALE_SEARXNG_URL")
        return SearxngSearch(client, settings.searxng_url, retries, backoff)
    if chosen == "tavily":
        if settings.tavily_api_key is None:
            raise SearchError("Search provider tavily needs TORALE_TAVILY_API_KEY")
        key = settings.tavily_api_key.get_secret_value()
        return TavilySearch(client, settings.tavily_url, key, retries, backoff)
    if chosen == "brave":
        if settings.brave_api_key is None:
            raise SearchError("Search provider brave needs TORALE_BRAVE_API_KEY")
        key = settings.brave_api_key.get_secret_value()
        return BraveSearch(client, settings.brave_url, key, retries, backoff)
    if chosen == "duckduckgo":
        return DuckDuckGoSearch(settings.fetch_timeout_seconds, retries, backoff)
    if chosen == "none":
        return NoSearch()
    raise SearchError(f"Unknown search provider {chosen!r}")
