"""The envelope of every list: `{"items", "total", "page", "limit"}` (SPEC §1).

On its own (pydantic only) so the SDK can use it without loading the server's web framework.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    limit: int
