"""Routes under /api/v1/tasks."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from torale.auth.deps import CurrentUser
from torale.db.session import SessionDep
from torale.pagination import Page, PageDep
from torale.state import app_state
from torale.tasks import service
from torale.tasks.schemas import TaskCreate, TaskRead, TaskState, TaskUpdate

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


def _policy(request: Request) -> service.TaskPolicy:
    return service.TaskPolicy.from_settings(app_state(request).settings)


@router.post(
    "",
    summary="Create a task",
    description="The task is scheduled before the response is sent: `next_run` is its first "
    "cron time, or now with `run_immediately`.",
)
async def create_task(
    request: Request, body: TaskCreate, user: CurrentUser, session: SessionDep
) -> TaskRead:
    task = await service.create_task(session, user_id=user.id, data=body, policy=_policy(request))
    return TaskRead.model_validate(task)


@router.get("", summary="List your tasks", description="Newest first.")
async def list_tasks(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    state: Annotated[TaskState | None, Query(description="Only tasks in this state.")] = None,
    is_active: Annotated[bool | None, Query(description="Only active (or inactive) tasks.")] = None,
) -> Page[TaskRead]:
    tasks, total = await service.list_tasks(
        session, user_id=user.id, page=page, state=state, is_active=is_active
    )
    return Page(
        items=[TaskRead.model_validate(t) for t in tasks],
        total=total,
        page=page.page,
        limit=page.limit,
    )


@router.get("/{task_id}", summary="Get a task")
async def get_task(task_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> TaskRead:
    return TaskRead.model_validate(
        await service.get_task(session, user_id=user.id, task_id=task_id)
    )


async def _update(
    request: Request, task_id: uuid.UUID, body: TaskUpdate, user: CurrentUser, session: SessionDep
) -> TaskRead:
    task = await service.update_task(
        session, user_id=user.id, task_id=task_id, data=body, policy=_policy(request)
    )
    return TaskRead.model_validate(task)


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
async def delete_task(task_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    await service.delete_task(session, user_id=user.id, task_id=task_id)
    return Response(status_code=204)
