"""Execution queries and the rules for starting one. Scoped to the owner, callers commit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Select, Table, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
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


async def start_scheduled_executions(
    session: AsyncSession, *, owners: dict[uuid.UUID, uuid.UUID], lease: timedelta
) -> dict[uuid.UUID, uuid.UUID]:
    """`start_execution` for many tasks at once, as pending scheduled runs.

    `owners` maps task ids to their users' ids. Returns {task id: new execution id} for the
    tasks that got one; a task whose previous run is still active keeps it and gets none. The
    same rules as one at a time, in three statements however many tasks there are: orphans
    swept, one INSERT … ON CONFLICT DO NOTHING (the partial unique index decides), and the
    tasks' `last_execution_id` moved.
    """
    if not owners:
        return {}
    now = datetime.now(UTC)
    executions = cast("Table", Execution.__table__)
    await session.execute(
        update(executions)
        .where(
            executions.c.task_id.in_(list(owners)),
            executions.c.status.in_(ACTIVE_EXECUTION_STATUSES),
            executions.c.lease_expires_at < now,
        )
        .values(status="failed", error_message=ORPHANED, completed_at=now)
    )
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    rows = [
        {
            "id": uuid.uuid4(),
            "task_id": task_id,
            "user_id": user_id,
            "status": "pending",
            "trigger": "schedule",
            "created_at": now,
            "started_at": now,
            "lease_expires_at": now + lease,
            "grounding_sources": [],
            "usage": {},
        }
        for task_id, user_id in owners.items()
    ]
    inserted = await session.execute(
        insert(executions)
        .on_conflict_do_nothing()
        .returning(executions.c.task_id, executions.c.id),
        rows,
    )
    started: dict[uuid.UUID, uuid.UUID] = {task_id: id_ for task_id, id_ in inserted.all()}
    if started:
        tasks = cast("Table", Task.__table__)
        await session.execute(
            update(tasks)
            .where(tasks.c.id == bindparam("task"))
            .values(last_execution_id=bindparam("execution")),
            [{"task": t, "execution": e} for t, e in started.items()],
        )
    return started


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
