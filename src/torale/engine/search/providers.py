"""The search providers: SearXNG, DuckDuckGo, Tavily, Brave, and none."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from torale.engine.search.base import SearchError, SearchResult
from torale.engine.search.http import request_json
from torale.inputs import clean_text

OTHER_PROVIDER = (
    "choose another provider with TORALE_SEARCH_PROVIDER (searxng, tavily, brave, or none to "
    "read only each task's urls) or the task's config.search_provider"
)


def _results(items: Any, url_key: str, title_key: str, snippet_key: str) -> list[SearchResult]:
    results = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get(url_key), str):
            results.append(
                SearchResult(
                    url=clean_text(item[url_key]),
                    title=clean_text(str(item.get(title_key) or "")),
                    snippet=clean_text(str(item.get(snippet_key) or "")),
                )
            )
    return results


@dataclass
class SearxngSearch:
    """A SearXNG instance's JSON API (`search.formats: [json]` must be enabled)."""

    client: httpx.AsyncClient
    base_url: str
    retries: int
    backoff: float
    deadline: float = 15.0  # for one attempt, all of it
    name: str = "searxng"

    async def search(self, query: str, *, max_results: int) -> list[SearchResult]:
        data = await request_json(
            self.client,
            "GET",
            self.base_url.rstrip("/") + "/search",
            params={"q": query, "format": "json"},
            provider=self.name,
            retries=self.retries,
            backoff=self.backoff,
            url_setting="TORALE_SEARXNG_URL",
            deadline=self.deadline,
        )
        return _results(
            data.get("results") if isinstance(data, dict) else None, "url", "title", "content"
        )[:max_results]


@dataclass
class TavilySearch:
    client: httpx.AsyncClient
    base_url: str
    api_key: str
    retries: int
    backoff: float
    deadline: float = 15.0  # for one attempt, all of it
    name: str = "tavily"

    async def search(self, query: str, *, max_results: int) -> list[SearchResult]:
        data = await request_json(
            self.client,
            "POST",
            self.base_url.rstrip("/") + "/search",
            json={"query": query, "max_results": max_results, "search_depth": "basic"},
            headers={"Authorization": f"Bearer {self.api_key}"},
            provider=self.name,
            retries=self.retries,
            backoff=self.backoff,
            deadline=self.deadline,
            key_setting="TORALE_TAVILY_API_KEY",
            url_setting="TORALE_TAVILY_URL",
        )
        items = data.get("results") if isinstance(data, dict) else None
        return _results(items, "url", "title", "content")[:max_results]


@dataclass
class BraveSearch:
    client: httpx.AsyncClient
    base_url: str
    api_key: str
    retries: int
    backoff: float
    deadline: float = 15.0  # for one attempt, all of it
    name: str = "brave"

    async def search(self, query: str, *, max_results: int) -> list[SearchResult]:
        data = await request_json(
            self.client,
            "GET",
            self.base_url.rstrip("/") + "/res/v1/web/search",
            params={"q": query, "count": max_results},
            headers={"X-Subscription-Token": self.api_key, "Accept": "application/json"},
            provider=self.name,
            retries=self.retries,
            backoff=self.backoff,
            deadline=self.deadline,
            key_setting="TORALE_BRAVE_API_KEY",
            url_setting="TORALE_BRAVE_URL",
        )
        web = data.get("web") if isinstance(data, dict) else None
        items = web.get("results") if isinstance(web, dict) else None
        return _results(items, "url", "title", "description")[:max_results]


@dataclass
class DuckDuckGoSearch:
    """DuckDuckGo through the `ddgs` package (no key). Its client is synchronous: a thread."""

    timeout: float
    retries: int
    backoff: float
    name: str = "duckduckgo"

    async def search(self, query: str, *, max_results: int) -> list[SearchResult]:
        from ddgs import DDGS
        from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

        from torale.engine.retry import TransientError, with_retries

        def search_now() -> list[dict[str, Any]]:
            return DDGS(timeout=int(self.timeout)).text(query, max_results=max_results)

        async def attempt() -> list[dict[str, Any]]:
            try:
                return await asyncio.wait_for(asyncio.to_thread(search_now), self.timeout + 5)
            except (RatelimitException, TimeoutException, TimeoutError) as exc:
                raise TransientError(type(exc).__name__) from exc

        try:
            items = await with_retries(attempt, retries=self.retries, backoff=self.backoff)
        except TransientError as exc:
            attempts = self.retries + 1
            raise SearchError(
                f"Search provider duckduckgo is unavailable ({exc}) after {attempts} attempts; "
                f"{OTHER_PROVIDER}"
            ) from exc
        except DDGSException as exc:
            # ddgs raises this for "no results" too; an empty search is not a failure.
            if "no results" in str(exc).lower():
                return []
            # Its message lists the engines ddgs tried behind DuckDuckGo and their request
            # URLs, the user's query included: neither is ours to show.
            raise SearchError(
                "Search provider duckduckgo (TORALE_SEARCH_PROVIDER) could not get results: "
                f"check that this server can reach the internet, or {OTHER_PROVIDER}"
            ) from exc
        return _results(items, "href", "title", "body")[:max_results]


@dataclass
class NoSearch:
    """Read only the task's `urls`."""

    name: str = "none"

    async def search(self, query: str, *, max_results: int) -> list[SearchResult]:
        return []
