"""The envelope of every list: `{"items", "total", "page", "limit"}`.

On its own (pydantic only) so the SDK can use it without loading the server's web framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class PagePosition(Protocol):
    """Which page was asked for (`pagination.PageParams` is one)."""

    @property
    def page(self) -> int: ...

    @property
    def limit(self) -> int: ...


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    limit: int

    @classmethod
    def of(cls, items: Sequence[T], total: int, params: PagePosition) -> Page[T]:
        """The page `params` asked for, holding `items` of `total`."""
        return cls(items=list(items), total=total, page=params.page, limit=params.limit)
