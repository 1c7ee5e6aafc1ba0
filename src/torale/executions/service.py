"""Execution queries and the rules for starting one. Scoped to the owner, callers commit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import ACTIVE_EXECUTION_STATUSES, Execution, Task
from torale.db.statements import insert_unless_conflict
from torale.pagination import PageParams, paginate

ORPHANED = "Interrupted: the process running it stopped before it finished"


async def sweep_orphans(session: AsyncSession, *, task_id: uuid.UUID, now: datetime) -> None:
    """Mark the task's pending/running executions whose lease has passed as failed."""
    await session.execute(
        update(Execution)
        .where(
            Execution.task_id == task_id,
            Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
            Execution.lease_expires_at < now,
        )
        .values(status="failed", error_message=ORPHANED, completed_at=now)
    )


async def active_execution(session: AsyncSession, *, task_id: uuid.UUID) -> Execution | None:
    return await session.scalar(
        select(Execution).where(
            Execution.task_id == task_id, Execution.status.in_(ACTIVE_EXECUTION_STATUSES)
        )
    )


async def start_execution(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    user_id: uuid.UUID,
    trigger: str,
    status: str,
    lease: timedelta,
) -> tuple[Execution, bool]:
    """A new pending/running execution of the task, or the one already active (and False).

    The partial unique index allows one active execution per task, so two requests or workers
    racing to start a run get the same one.
    """
    now = datetime.now(UTC)
    await sweep_orphans(session, task_id=task_id, now=now)
    execution_id = uuid.uuid4()
    created = await insert_unless_conflict(
        session,
        Execution,
        {
            "id": execution_id,
            "task_id": task_id,
            "user_id": user_id,
            "status": status,
            "trigger": trigger,
            "created_at": now,
            "started_at": now,
            "lease_expires_at": now + lease,
            "grounding_sources": [],
            "usage": {},
        },
    )
    execution = await active_execution(session, task_id=task_id)
    assert execution is not None, "an active execution exists after inserting one"
    if created:
        await session.execute(
            update(Task).where(Task.id == task_id).values(last_execution_id=execution.id)
        )
    return execution, created


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


async def by_ids(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, Execution]:
    """Executions by id, in one query (for embedding tasks' last executions)."""
    if not ids:
        return {}
    rows = await session.scalars(select(Execution).where(Execution.id.in_(ids)))
    return {row.id: row for row in rows}


async def requeue(session: AsyncSession, *, execution_id: uuid.UUID, lease: timedelta) -> bool:
    """Put an execution whose worker died back to pending, to run it again (the same id)."""
    moved = await session.execute(
        update(Execution)
        .where(Execution.id == execution_id, Execution.status.in_(ACTIVE_EXECUTION_STATUSES))
        .values(status="pending", lease_expires_at=datetime.now(UTC) + lease)
    )
    return bool(getattr(moved, "rowcount", 0))


async def fail_unstarted(session: AsyncSession, *, execution_id: uuid.UUID, reason: str) -> None:
    """A pending execution that could not be handed to the scheduler: failed, with why."""
    await session.execute(
        update(Execution)
        .where(Execution.id == execution_id, Execution.status == "pending")
        .values(
            status="failed",
            error_message=f"Could not be started: {reason}",
            completed_at=datetime.now(UTC),
            lease_expires_at=None,
        )
    )
