"""What a feed shows: a user's newest notifications, or one task's, scoped to the owner. A
notification is a run that notified (`executions.notification` is set), whatever its channels:
a task with none still has a feed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import Execution, Task
from torale.notify.outbox import diff_of_notification
from torale.tasks import service as tasks_service

MAX_ENTRIES = 50  # the newest notifications a feed carries


@dataclass(frozen=True, slots=True)
class Entry:
    """One notification, as an entry shows it."""

    execution_id: uuid.UUID
    task_id: uuid.UUID
    task_name: str
    answer: str
    change_summary: str | None
    diff: str | None
    sources: list[dict[str, Any]]
    at: datetime  # when the run that notified finished


@dataclass(frozen=True, slots=True)
class Notifications:
    """A feed's content: `task` is None for the feed of all the user's tasks."""

    task: Task | None
    entries: list[Entry]


def _entry(execution: Execution, task_name: str) -> Entry:
    result = execution.result or {}
    answer = str(result.get("answer") or "")
    sources = [s for s in execution.grounding_sources or [] if isinstance(s, dict)]
    return Entry(
        execution_id=execution.id,
        task_id=execution.task_id,
        task_name=task_name,
        answer=answer,
        change_summary=execution.change_summary,
        diff=diff_of_notification(
            execution.notification or "",
            answer=answer,
            change_summary=execution.change_summary,
            sources=sources,
        ),
        sources=sources,
        at=execution.completed_at or execution.created_at,
    )


async def notifications(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    task_id: uuid.UUID | None = None,
    limit: int = MAX_ENTRIES,
) -> Notifications:
    """The newest `limit` notifications of the user's tasks (of one task, when `task_id` is
    given: another user's task is a NotFoundError), newest first."""
    task = None
    statement = (
        select(Execution, Task.name)
        .join(Task, Task.id == Execution.task_id)
        .where(Execution.user_id == user_id, Execution.notification.is_not(None))
    )
    if task_id is not None:
        task = await tasks_service.get_task(session, user_id=user_id, task_id=task_id)
        statement = statement.where(Execution.task_id == task.id)
    statement = statement.order_by(Execution.created_at.desc(), Execution.id.desc()).limit(limit)
    rows = (await session.execute(statement)).all()
    return Notifications(task, [_entry(execution, name) for execution, name in rows])
