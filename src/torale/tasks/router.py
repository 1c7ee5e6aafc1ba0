"""Routes under /api/v1/tasks."""

from __future__ import annotations

import contextlib
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from torale.auth.deps import CurrentUser
from torale.db.engine import session_scope
from torale.db.models import Task
from torale.db.session import SessionDep
from torale.executions import service as executions_service
from torale.executions.schemas import ExecutionRead
from torale.pages import Page
from torale.pagination import PageDep
from torale.state import app_state
from torale.statuses import TaskState
from torale.tasks import service
from torale.tasks.list_cache import ListKey
from torale.tasks.schemas import TaskCreate, TaskRead, TaskUpdate

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


def _policy(request: Request) -> service.TaskPolicy:
    return service.TaskPolicy.from_settings(app_state(request).settings)


async def _read(session: AsyncSession, tasks: list[Task]) -> list[TaskRead]:
    """Tasks as responses, their last executions embedded (one query for all of them)."""
    last = await executions_service.by_ids(
        session, [t.last_execution_id for t in tasks if t.last_execution_id]
    )
    reads = []
    for task in tasks:
        read = TaskRead.model_validate(task)
        execution = last.get(task.last_execution_id) if task.last_execution_id else None
        if execution is not None:
            read.last_execution = ExecutionRead.model_validate(execution)
        reads.append(read)
    return reads


@router.post(
    "",
    summary="Create a task",
    description="The task is scheduled before the response is sent: `next_run` is its first "
    "cron time, or now with `run_immediately`.",
)
async def create_task(request: Request, body: TaskCreate, user: CurrentUser) -> TaskRead:
    state = app_state(request)
    task = service.build_task(user_id=user.id, data=body, policy=_policy(request))
    # Scheduled before it is written, outside the transaction: a 503 leaves nothing behind, and
    # no database lock (SQLite's writer, the owner's row the insert's trigger updates) is held
    # across the scheduler's round trip, so creates do not queue behind each other's.
    await state.scheduler.task_saved(task)
    written = False
    try:
        async with session_scope(state.sessions, state.write_lock) as session:
            session.add(task)
            await session.flush()
            created = TaskRead.model_validate(task)  # a new task has not run
            written = True  # only the commit is left
    except BaseException:
        # Not saved: take the schedule back. A failed commit may have saved the task after
        # all, so its schedule stays; one without a task runs nothing and reconcile drops it.
        if not written:
            with contextlib.suppress(Exception):
                await state.scheduler.task_deleted(task.id)
        raise
    return created


@router.get(
    "",
    response_model=Page[TaskRead],
    summary="List your tasks",
    description="Newest first. Filters: `state`, `is_active`.",
)
async def list_tasks(
    request: Request,
    user: CurrentUser,
    page: PageDep,
    state: Annotated[TaskState | None, Query(description="Only tasks in this state.")] = None,
    is_active: Annotated[bool | None, Query(description="Only active (or inactive) tasks.")] = None,
) -> Response:
    app = app_state(request)
    key = ListKey(user.id, user.tasks_version, page.page, page.limit, state, is_active)
    body = app.task_lists.get(key)
    if body is None:
        async with session_scope(app.sessions) as session:
            tasks, total = await service.list_tasks(
                session, user_id=user.id, page=page, state=state, is_active=is_active
            )
            items = await _read(session, tasks)
        listing = Page[TaskRead](
            items=items,
            total=total,
            page=page.page,
            limit=page.limit,
        )
        body = listing.model_dump_json().encode()
        app.task_lists.put(key, body)
    return Response(body, media_type="application/json")


@router.get("/{task_id}", summary="Get a task")
async def get_task(task_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> TaskRead:
    task = await service.get_task(session, user_id=user.id, task_id=task_id)
    return (await _read(session, [task]))[0]


async def _update(
    request: Request, task_id: uuid.UUID, body: TaskUpdate, user: CurrentUser, session: SessionDep
) -> TaskRead:
    task = await service.update_task(
        session, user_id=user.id, task_id=task_id, data=body, policy=_policy(request)
    )
    await app_state(request).scheduler.task_saved(task)  # before the commit: 503 rolls back
    return (await _read(session, [task]))[0]


_UPDATE_DOC = (
    "Partial update: only the fields sent change. State changes: active ↔ paused, "
    "active → completed, completed → active (others answer 409). Pausing stops scheduled runs; "
    "resuming schedules the next run from the cron."
)
router.add_api_route(
    "/{task_id}", _update, methods=["PUT"], summary="Update a task", description=_UPDATE_DOC
)
router.add_api_route(
    "/{task_id}",
    _update,
    methods=["PATCH"],
    summary="Update a task (same as PUT)",
    description=_UPDATE_DOC,
    operation_id="patch_task",
)


@router.delete(
    "/{task_id}", status_code=204, summary="Delete a task", description="Its schedule goes with it."
)
async def delete_task(
    request: Request, task_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Response:
    await service.delete_task(session, user_id=user.id, task_id=task_id)
    await app_state(request).scheduler.task_deleted(task_id)  # before the commit
    return Response(status_code=204)
