"""The admin levers with effects beyond the database: deactivating an account pauses its tasks'
schedules, activating it resumes them. One unit of work each; the scheduler is told before the
commit, so a backend that refuses (503) leaves the account and its tasks as they were."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from torale.admin import service
from torale.admin.schemas import AccountChange, AdminUserRead
from torale.db.database import session_scope
from torale.pagination import PageParams
from torale.runtime import Runtime


def user_read(row: tuple[Any, ...]) -> AdminUserRead:
    """A row of `service.list_users` as a response."""
    user, tasks, active_tasks, key_used, last_run = row
    activity = [t for t in (key_used, last_run) if t is not None]
    return AdminUserRead(
        id=user.id,
        email=user.email,
        first_name=user.first_name,
        role=user.role,
        is_active=user.is_active,
        created_at=user.created_at,
        task_count=tasks,
        active_task_count=active_tasks,
        last_activity=max(activity) if activity else None,
    )


async def _account(session: AsyncSession, user_id: uuid.UUID, changed: int) -> AccountChange:
    rows, _ = await service.list_users(session, page=PageParams(page=1, limit=1), only=user_id)
    return AccountChange(user=user_read(rows[0]), tasks_changed=changed)


async def deactivate_user(rt: Runtime, *, user_id: uuid.UUID, actor_id: uuid.UUID) -> AccountChange:
    """The user's keys and sign-in tokens stop working at once and their active tasks are
    paused (with the reason, so that activation resumes exactly those). 409 for oneself."""
    async with session_scope(rt.sessions, rt.write_lock) as session:
        _, paused = await service.deactivate(session, user_id=user_id, actor_id=actor_id)
        for task in paused:
            await rt.scheduler.task_saved(task)  # before the commit: a refusal rolls back
        return await _account(session, user_id, len(paused))


async def activate_user(rt: Runtime, *, user_id: uuid.UUID) -> AccountChange:
    """Undo deactivation: the user can sign in again, and the tasks deactivation paused run
    again from their next cron time."""
    async with session_scope(rt.sessions, rt.write_lock) as session:
        _, resumed = await service.activate(session, user_id=user_id)
        for task in resumed:
            await rt.scheduler.task_saved(task)
        return await _account(session, user_id, len(resumed))
