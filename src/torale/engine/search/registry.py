"""Which search provider a run uses: the task's `config.search_provider`, else the setting."""

from __future__ import annotations

import httpx

from torale.config import Settings
from torale.engine.search.base import SearchNotConfiguredError, SearchProvider
from torale.engine.search.providers import (
    BraveSearch,
    DuckDuckGoSearch,
    NoSearch,
    SearxngSearch,
    TavilySearch,
)


def missing_setting(name: str, settings: Settings) -> str | None:
    """Why the provider called `name` cannot be used on this server, or None if it can."""
    needs = {
        "searxng": ("TORALE_SEARXNG_URL", settings.searxng_url),
        "tavily": ("TORALE_TAVILY_API_KEY", settings.tavily_api_key),
        "brave": ("TORALE_BRAVE_API_KEY", settings.brave_api_key),
    }
    if name in needs and not needs[name][1]:
        return f"Search provider {name} needs {needs[name][0]}, which this server does not set"
    return None


def search_provider(
    name: str | None, settings: Settings, client: httpx.AsyncClient
) -> SearchProvider:
    """The provider called `name` (default: the server's). SearchError if it is not configured."""
    chosen = name or settings.search_provider
    retries, backoff = settings.provider_retries, settings.retry_backoff_seconds
    deadline = settings.fetch_timeout_seconds
    if chosen == "searxng" and settings.searxng_url:
        return SearxngSearch(client, settings.searxng_url, retries, backoff, deadline)
    if chosen == "tavily" and settings.tavily_api_key is not None:
        key = settings.tavily_api_key.get_secret_value()
        return TavilySearch(client, settings.tavily_url, key, retries, backoff, deadline)
    if chosen == "brave" and settings.brave_api_key is not None:
        key = settings.brave_api_key.get_secret_value()
        return BraveSearch(client, settings.brave_url, key, retries, backoff, deadline)
    if chosen == "duckduckgo":
        return DuckDuckGoSearch(settings.fetch_timeout_seconds, retries, backoff)
    if chosen == "none":
        return NoSearch()
    problem = missing_setting(chosen, settings) or f"Unknown search provider {chosen!r}"
    raise SearchNotConfiguredError(problem)
