"""What can be done with a user's tasks, whoever asks: an API route, the CLI, an MCP tool, a web
page. Each action is one unit of work scoped to the owner (another user's task is a 404), and
tells the scheduler of every change before it commits, so a backend that refuses (503) leaves
nothing changed. Every write locks the owner's row first and is refused (403) if the account was
deactivated after the request authenticated (see `db.locks`). Rules and queries are in
`service`, state changes in `transitions`.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db import locks
from torale.db.database import session_scope
from torale.engine.evaluate import EvaluationError, NoModelConfiguredError
from torale.errors import (
    FieldValidationError,
    ServiceUnavailableError,
    UpstreamError,
    validation_error_items,
)
from torale.executions import service as executions_service
from torale.executions.schemas import ExecutionRead
from torale.pages import Page
from torale.pagination import PageParams
from torale.runtime import Runtime
from torale.statuses import TaskState
from torale.tasks import read_json, service, suggest
from torale.tasks.list_cache import ListKey, TaskKey, TaskListCache
from torale.tasks.schemas import TaskCreate, TaskDraft, TaskRead, TaskSuggestion, TaskUpdate


async def _last_executions(
    session: AsyncSession, tasks: list[dict[str, Any]]
) -> dict[uuid.UUID, dict[str, Any]]:
    """The last executions of tasks (rows), by id, in one query."""
    return await executions_service.by_ids(
        session, [t["last_execution_id"] for t in tasks if t["last_execution_id"]]
    )


async def read_tasks(session: AsyncSession, tasks: list[dict[str, Any]]) -> list[TaskRead]:
    """Tasks (rows: `service.task_row`) as responses, their last executions embedded (one
    query for all of them)."""
    last = await _last_executions(session, tasks)
    reads = []
    for task in tasks:
        read = TaskRead.model_validate(task)
        execution = last.get(task["last_execution_id"]) if task["last_execution_id"] else None
        if execution is not None:
            read.last_execution = ExecutionRead.model_validate(execution)
        reads.append(read)
    return reads


async def create_task(rt: Runtime, *, user_id: uuid.UUID, data: TaskCreate) -> TaskRead:
    """Validate, schedule, then write the task. 422 for invalid input, 503 if the scheduler
    refuses (nothing is written)."""
    return TaskRead.model_validate(await _create_task(rt, user_id=user_id, data=data))


async def create_task_body(rt: Runtime, *, user_id: uuid.UUID, data: TaskCreate) -> bytes:
    """`create_task`, its answer as JSON (`read_json`: the stored row is not validated again)."""
    return read_json.task_json(await _create_task(rt, user_id=user_id, data=data))


async def _create_task(rt: Runtime, *, user_id: uuid.UUID, data: TaskCreate) -> dict[str, Any]:
    """`create_task`; the new task as a row (`service.task_row`; it has not run)."""
    task = service.build_task(user_id=user_id, data=data, policy=rt.policy)
    # Scheduled before it is written, outside the transaction: a 503 leaves nothing behind, and
    # no database lock (SQLite's writer, the owner's row the insert's trigger updates) is held
    # across the scheduler's round trip, so creates do not queue behind each other's.
    await rt.scheduler.task_saved(task)
    written = False
    try:
        async with session_scope(rt.sessions, rt.write_lock) as session:
            # The request authenticated before; refused (403) if the account was deactivated
            # since. The owner's row stays locked until the commit (db.locks).
            await locks.lock_active_user(session, user_id)
            session.add(task)
            await session.flush()
            created = service.task_row(task)
            written = True  # only the commit is left
    except BaseException:
        # Not saved: take the schedule back. A failed commit may have saved the task after
        # all, so its schedule stays; one without a task runs nothing and reconcile drops it.
        if not written:
            with contextlib.suppress(Exception):
                await rt.scheduler.task_deleted(task.id)
        raise
    return created


async def get_task(rt: Runtime, *, user_id: uuid.UUID, task_id: uuid.UUID) -> TaskRead:
    async with session_scope(rt.sessions, writes=False) as session:
        task = await service.get_task_row(session, user_id=user_id, task_id=task_id)
        return (await read_tasks(session, [task]))[0]


async def get_task_body(
    rt: Runtime,
    cache: TaskListCache,
    *,
    user_id: uuid.UUID,
    tasks_version: int,
    task_id: uuid.UUID,
) -> bytes:
    """`get_task` as JSON, from the cache while the owner's tasks_version says it is current
    (the task and its last execution move it)."""
    key = TaskKey(user_id, tasks_version, task_id)
    body = cache.get(key)
    if body is None:
        async with session_scope(rt.sessions, writes=False) as session:
            task = await service.get_task_row(session, user_id=user_id, task_id=task_id)  # 404
            last = await _last_executions(session, [task])
        body = read_json.task_json(task, last.get(task["last_execution_id"]))
        cache.put(key, body)
    return body


async def list_tasks(
    rt: Runtime,
    *,
    user_id: uuid.UUID,
    page: PageParams,
    state: TaskState | None = None,
    is_active: bool | None = None,
    text: str | None = None,
) -> Page[TaskRead]:
    """Newest first; `text` narrows to tasks whose name, query or condition contains it."""
    async with session_scope(rt.sessions, writes=False) as session:
        tasks, total = await service.list_tasks(
            session, user_id=user_id, page=page, state=state, is_active=is_active, text=text
        )
        return Page[TaskRead].of(await read_tasks(session, tasks), total, page)


async def list_tasks_body(
    rt: Runtime,
    cache: TaskListCache,
    *,
    user_id: uuid.UUID,
    tasks_version: int,
    page: PageParams,
    state: TaskState | None = None,
    is_active: bool | None = None,
) -> bytes:
    """A page of `list_tasks` as JSON, from the cache while the owner's tasks_version (read at
    authentication) says it is current; the API's list route and the tasks page use it."""
    key = ListKey(user_id, tasks_version, page.page, page.limit, state, is_active)
    body = cache.get(key)
    if body is None:
        async with session_scope(rt.sessions, writes=False) as session:
            tasks, total = await service.list_tasks(
                session, user_id=user_id, page=page, state=state, is_active=is_active
            )
            last = await _last_executions(session, tasks)
        body = read_json.page_json(tasks, last, total=total, page=page.page, limit=page.limit)
        cache.put(key, body)
    return body


async def update_task(
    rt: Runtime, *, user_id: uuid.UUID, task_id: uuid.UUID, data: TaskUpdate
) -> TaskRead:
    """Partial update (only the fields sent), state changes included: 409 for a transition
    the table does not allow, 503 if the scheduler refuses (nothing is changed)."""
    async with session_scope(rt.sessions, rt.write_lock) as session:
        await locks.lock_active_user(session, user_id)  # first: see create_task
        task = await service.update_task(
            session, user_id=user_id, task_id=task_id, data=data, policy=rt.policy
        )
        await rt.scheduler.task_saved(task)  # before the commit: a refusal rolls back
        return (await read_tasks(session, [service.task_row(task)]))[0]


async def pause_task(rt: Runtime, *, user_id: uuid.UUID, task_id: uuid.UUID) -> TaskRead:
    """No more scheduled runs until resumed (409 for a completed task)."""
    return await update_task(
        rt, user_id=user_id, task_id=task_id, data=TaskUpdate(state=TaskState.PAUSED)
    )


async def resume_task(rt: Runtime, *, user_id: uuid.UUID, task_id: uuid.UUID) -> TaskRead:
    """Active again (from paused or completed), next run at the next cron time."""
    return await update_task(
        rt, user_id=user_id, task_id=task_id, data=TaskUpdate(state=TaskState.ACTIVE)
    )


async def delete_task(rt: Runtime, *, user_id: uuid.UUID, task_id: uuid.UUID) -> None:
    """The task, its runs and its schedule go (503 if the scheduler refuses: nothing goes)."""
    async with session_scope(rt.sessions, rt.write_lock) as session:
        await locks.lock_active_user(session, user_id)  # first: see create_task
        await service.delete_task(session, user_id=user_id, task_id=task_id)
        await rt.scheduler.task_deleted(task_id)  # before the commit


def _field_problems(errors: list[dict[str, Any]]) -> str:
    """Validation errors as one line: `schedule: Invalid cron expression …; urls.0: …`."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error["loc"] if part != "body")
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(parts)


async def suggest_task(rt: Runtime, *, user_id: uuid.UUID, prompt: str) -> TaskSuggestion:
    """A task drafted by the server's model from `prompt`, valid as this user's create body
    would be; nothing is saved. 503 without a model (naming what to set), 502 when the model
    fails or drafts no valid task."""

    def problem(draft: TaskDraft) -> str | None:
        try:
            data = TaskCreate.model_validate(draft.model_dump(exclude_unset=True))
            service.build_task(user_id=user_id, data=data, policy=rt.policy)  # not added
        except ValidationError as exc:
            return _field_problems(validation_error_items(exc.errors()))
        except FieldValidationError as exc:
            return _field_problems(exc.errors)
        return None

    try:
        found = await suggest.suggest(
            rt.run_engine.evaluator,
            prompt,
            check=problem,
            min_schedule_seconds=rt.policy.min_schedule_seconds,
        )
    except NoModelConfiguredError as exc:
        raise ServiceUnavailableError(str(exc)) from None
    except EvaluationError as exc:
        raise UpstreamError(str(exc)) from None
    return TaskSuggestion(task=found.draft, explanation=found.explanation)
