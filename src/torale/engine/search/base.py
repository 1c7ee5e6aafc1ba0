"""The search protocol and what a search returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

# Every provider a task or the server may choose (the registry builds each).
SearchProviderName = Literal["searxng", "duckduckgo", "tavily", "brave", "none"]


@dataclass(frozen=True, slots=True)
class SearchResult:
    url: str
    title: str
    snippet: str


class SearchError(Exception):
    """A search that failed for good; the message is shown to the user."""


class SearchNotConfiguredError(SearchError):
    """The provider asked for lacks a setting on this server (its key or URL)."""


class SearchProvider(Protocol):
    name: str

    async def search(self, query: str, *, max_results: int) -> list[SearchResult]: ...
