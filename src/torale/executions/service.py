"""Execution queries, scoped by the caller (a task already checked to be the owner's). Status
changes are in `lifecycle`."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import Execution, columns_of
from torale.pagination import PageParams, paginate
from torale.statuses import ACTIVE_EXECUTION_STATUSES, ExecutionStatus


async def active_execution(session: AsyncSession, *, task_id: uuid.UUID) -> Execution | None:
    """The task's pending or running execution (there is at most one)."""
    return await session.scalar(
        select(Execution).where(
            Execution.task_id == task_id, Execution.status.in_(ACTIVE_EXECUTION_STATUSES)
        )
    )


def _of_task(task_id: uuid.UUID) -> Select[Execution]:
    return select(Execution).where(Execution.task_id == task_id)


async def list_executions(
    session: AsyncSession, *, task_id: uuid.UUID, page: PageParams, notified_only: bool = False
) -> tuple[list[Execution], int]:
    statement = _of_task(task_id)
    if notified_only:
        statement = statement.where(
            or_(Execution.notification.is_not(None), Execution.condition_met.is_(True))
        )
    statement = statement.order_by(Execution.created_at.desc(), Execution.id.desc())
    return await paginate(session, statement, page)


async def get_execution(session: AsyncSession, *, execution_id: uuid.UUID) -> Execution | None:
    return await session.get(Execution, execution_id, populate_existing=True)


_COLUMNS = columns_of(Execution)


async def by_ids(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """Executions by id as rows (mappings of their attributes), in one query: for embedding
    tasks' last executions in responses, where ORM objects would only cost time."""
    if not ids:
        return {}
    connection = await session.connection()  # Core rows: no ORM result handling
    rows = await connection.execute(select(*_COLUMNS).where(Execution.id.in_(ids)))
    return {row.id: dict(row._mapping) for row in rows}


async def last_success(session: AsyncSession, *, task_id: uuid.UUID) -> Execution | None:
    """The task's latest successful execution (what its next run compares with)."""
    return await session.scalar(
        _of_task(task_id)
        .where(Execution.status == ExecutionStatus.SUCCESS)
        .order_by(Execution.created_at.desc(), Execution.id.desc())
        .limit(1)
    )
