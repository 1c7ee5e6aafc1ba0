"""Admin queries and levers. Every list is one query per page: aggregates come from grouped
subqueries joined in, and the total from a window count (pagination.paginate_rows)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db import locks
from torale.db.models import ApiKey, Delivery, Execution, Task, User
from torale.errors import ConflictError, NotFoundError
from torale.pagination import PageParams, paginate_rows
from torale.statuses import DeliveryStatus, ExecutionStatus, PausedReason, TaskState
from torale.tasks import transitions

DEACTIVATED = PausedReason.ACCOUNT_DEACTIVATED


async def stats(session: AsyncSession, *, now: datetime) -> dict[str, Any]:
    users = (
        await session.execute(
            select(func.count(), func.count().filter(User.is_active.is_(True))).select_from(User)
        )
    ).one()
    grouped = await session.execute(select(Task.state, func.count()).group_by(Task.state))
    by_state: dict[str, int] = {state: count for state, count in grouped}
    met = await session.scalar(
        select(func.count()).select_from(Task).where(Task.condition_met.is_(True))
    )
    since = now - timedelta(hours=24)
    runs = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(Execution.status == ExecutionStatus.SUCCESS),
                func.count().filter(Execution.status == ExecutionStatus.FAILED),
            ).where(Execution.created_at >= since)
        )
    ).one()
    finished = runs[1] + runs[2]
    popular = (
        await session.execute(
            select(Task.search_query, func.count().label("n"))
            .group_by(Task.search_query)
            .order_by(func.count().desc(), Task.search_query)
            .limit(10)
        )
    ).all()
    return {
        "users": {"total": users[0], "active": users[1]},
        "tasks": {
            "total": sum(by_state.values()),
            "by_state": {str(s): by_state.get(s, 0) for s in TaskState},
            "condition_met": int(met or 0),
        },
        "executions_24h": {
            "total": runs[0],
            "succeeded": runs[1],
            "failed": runs[2],
            "success_rate": round(runs[1] / finished, 4) if finished else None,
        },
        "popular_queries": [{"search_query": q, "tasks": n} for q, n in popular],
    }


def _runs_per_task() -> Any:
    return (
        select(
            Execution.task_id,
            func.count().label("runs"),
            func.max(Execution.created_at).label("last_run_at"),
        )
        .group_by(Execution.task_id)
        .subquery()
    )


async def list_queries(
    session: AsyncSession, *, page: PageParams, active_only: bool, user_id: uuid.UUID | None
) -> tuple[list[tuple[Any, ...]], int]:
    runs = _runs_per_task()
    statement: Select[*tuple[Any, ...]] = (
        select(Task, User.email, func.coalesce(runs.c.runs, 0), runs.c.last_run_at)
        .join(User, User.id == Task.user_id)
        .outerjoin(runs, runs.c.task_id == Task.id)
    )
    if active_only:
        statement = statement.where(Task.state == TaskState.ACTIVE)
    if user_id is not None:
        statement = statement.where(Task.user_id == user_id)
    statement = statement.order_by(Task.created_at.desc(), Task.id.desc())
    return await paginate_rows(session, statement, page)


async def list_executions(
    session: AsyncSession,
    *,
    page: PageParams,
    status: ExecutionStatus | None,
    task_id: uuid.UUID | None,
    user_id: uuid.UUID | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[tuple[Any, ...]], int]:
    statement: Select[*tuple[Any, ...]] = (
        select(Execution, Task.name, User.email)
        .join(Task, Task.id == Execution.task_id)
        .join(User, User.id == Execution.user_id)
    )
    conditions = []
    if status is not None:
        conditions.append(Execution.status == status)
    if task_id is not None:
        conditions.append(Execution.task_id == task_id)
    if user_id is not None:
        conditions.append(Execution.user_id == user_id)
    if since is not None:
        conditions.append(Execution.created_at >= since)
    if until is not None:
        conditions.append(Execution.created_at < until)
    if conditions:
        statement = statement.where(and_(*conditions))
    statement = statement.order_by(Execution.created_at.desc(), Execution.id.desc())
    return await paginate_rows(session, statement, page)


async def list_errors(
    session: AsyncSession, *, page: PageParams
) -> tuple[list[tuple[Any, ...]], int]:
    """Failed executions and failed deliveries, newest first, in one query."""
    executions = select(
        literal("execution").label("kind"),
        Execution.id.label("id"),
        Execution.task_id.label("task_id"),
        Execution.user_id.label("user_id"),
        Execution.completed_at.label("occurred_at"),
        Execution.error_message.label("error"),
        literal(None).label("channel_type"),
    ).where(Execution.status == ExecutionStatus.FAILED)
    deliveries = select(
        literal("delivery").label("kind"),
        Delivery.id.label("id"),
        Delivery.task_id.label("task_id"),
        Delivery.user_id.label("user_id"),
        Delivery.completed_at.label("occurred_at"),
        Delivery.last_error.label("error"),
        Delivery.channel_type.label("channel_type"),
    ).where(Delivery.status == DeliveryStatus.FAILED)
    both = union_all(executions, deliveries).subquery()
    statement: Select[*tuple[Any, ...]] = (
        select(both, Task.name, User.email)
        .join(Task, Task.id == both.c.task_id)
        .join(User, User.id == both.c.user_id)
        .order_by(both.c.occurred_at.desc(), both.c.id.desc())
    )
    return await paginate_rows(session, statement, page)


async def list_users(
    session: AsyncSession, *, page: PageParams, only: uuid.UUID | None = None
) -> tuple[list[tuple[Any, ...]], int]:
    tasks = (
        select(
            Task.user_id,
            func.count().label("tasks"),
            func.count().filter(Task.state == TaskState.ACTIVE).label("active_tasks"),
        )
        .group_by(Task.user_id)
        .subquery()
    )
    keys = (
        select(ApiKey.user_id, func.max(ApiKey.last_used_at).label("last_used_at"))
        .group_by(ApiKey.user_id)
        .subquery()
    )
    runs = (
        select(Execution.user_id, func.max(Execution.created_at).label("last_run_at"))
        .group_by(Execution.user_id)
        .subquery()
    )
    statement: Select[*tuple[Any, ...]] = (
        select(
            User,
            func.coalesce(tasks.c.tasks, 0),
            func.coalesce(tasks.c.active_tasks, 0),
            keys.c.last_used_at,
            runs.c.last_run_at,
        )
        .outerjoin(tasks, tasks.c.user_id == User.id)
        .outerjoin(keys, keys.c.user_id == User.id)
        .outerjoin(runs, runs.c.user_id == User.id)
        .order_by(User.created_at.desc(), User.id.desc())
    )
    if only is not None:
        statement = statement.where(User.id == only)
    return await paginate_rows(session, statement, page)


async def _user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError("User not found")
    return user


async def deactivate(
    session: AsyncSession, *, user_id: uuid.UUID, actor_id: uuid.UUID
) -> tuple[User, list[Task]]:
    """The user can no longer authenticate; their active tasks are paused (with the reason).
    Returns the user and the tasks it paused."""
    if user_id == actor_id:
        raise ConflictError("You cannot deactivate your own account")
    await locks.lock_users(session, [user_id])  # first: see db.locks
    user = await _user(session, user_id)
    user.is_active = False
    await session.flush()
    paused = await transitions.pause_for_deactivation(
        session, user_ids=[user_id], now=datetime.now(UTC)
    )
    return user, paused


async def activate(session: AsyncSession, *, user_id: uuid.UUID) -> tuple[User, list[Task]]:
    """Undo deactivate: the user can sign in again, and exactly the tasks deactivation paused
    run again (from their next cron time)."""
    await locks.lock_users(session, [user_id])  # first: see db.locks
    user = await _user(session, user_id)
    user.is_active = True
    now = datetime.now(UTC)
    paused = await session.scalars(
        select(Task).where(
            Task.user_id == user_id,
            Task.state == TaskState.PAUSED,
            Task.paused_reason == DEACTIVATED,
        )
    )
    resumed = [t for t in paused if transitions.resume_paused_for(t, DEACTIVATED, now=now)]
    await session.flush()
    return user, resumed
