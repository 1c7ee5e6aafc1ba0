"""`?page=&limit=` parameters and the `{items, total, page, limit}` envelope every list uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

M = TypeVar("M")

# The bounds of `?page=&limit=` (pages and limits start at 1).
MAX_PAGE = 1_000_000
MAX_LIMIT = 100
DEFAULT_LIMIT = 20


@dataclass(frozen=True, slots=True)
class PageParams:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


async def _page_params(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page number, from 1.")] = 1,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}.")
    ] = DEFAULT_LIMIT,
) -> PageParams:
    return PageParams(page=page, limit=limit)


PageDep = Annotated[PageParams, Depends(_page_params)]


async def paginate_rows(
    session: AsyncSession,
    statement: Select[*tuple[Any, ...]],
    params: PageParams,
    *,
    core: bool = False,
) -> tuple[list[tuple[Any, ...]], int]:
    """One page of `statement`'s rows (already ordered) and the total, in one query.

    `count(*) OVER ()` is computed before LIMIT/OFFSET, so each row carries the total; only a
    page past the end needs a second (count) query. `core`: a statement of columns only, run
    on the session's connection (no ORM result handling, which costs more than the rows).
    """
    windowed = (
        statement.add_columns(func.count().over().label("_total"))
        .limit(params.limit)
        .offset(params.offset)
    )
    if core:
        rows = (await (await session.connection()).execute(windowed)).all()
    else:
        rows = (await session.execute(windowed)).all()
    if rows:
        return [tuple(row[:-1]) for row in rows], int(rows[0][-1])
    if params.offset == 0:
        return [], 0
    count = select(func.count()).select_from(statement.order_by(None).subquery())
    return [], int(await session.scalar(count) or 0)


async def paginate(
    session: AsyncSession, statement: Select[M], params: PageParams
) -> tuple[list[M], int]:
    """One page of a single-entity `statement` and the total (see paginate_rows)."""
    rows, total = await paginate_rows(session, statement, params)
    return [row[0] for row in rows], total
