"""Routes under /api/v1/tasks."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from torale.auth.deps import CurrentUser
from torale.errors import error_responses
from torale.pages import Page
from torale.pagination import PageDep
from torale.runtime import Runtime
from torale.state import app_state
from torale.statuses import TaskState
from torale.tasks import actions
from torale.tasks.schemas import (
    SuggestRequest,
    TaskCreate,
    TaskRead,
    TaskSuggestion,
    TaskUpdate,
)

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


@router.post(
    "",
    response_model=TaskRead,
    summary="Create a task",
    description="The task is scheduled before the response is sent: `next_run` is its first "
    "cron time, or now with `run_immediately`.",
)
async def create_task(request: Request, body: TaskCreate, user: CurrentUser) -> Response:
    # The answer is written from the stored row (tasks.read_json), not validated again.
    created = await actions.create_task_body(
        Runtime.of_request(request), user_id=user.id, data=body
    )
    return Response(created, media_type="application/json")


@router.post(
    "/suggest",
    summary="Draft a task from a sentence",
    description="The server's model turns what you want watched, in your words, into a task: "
    "name, search query, condition, schedule, notify behaviour, and the pages (with selectors) "
    "and mode when you name a page. The draft is validated exactly like a new task; nothing is "
    "saved: send `task` to `POST /api/v1/tasks` (as it is, or changed). Counts against your "
    "rate limit. 503 when the server has no model, 502 when the model fails or drafts no "
    "valid task.",
    responses=error_responses(502),
)
async def suggest_task(request: Request, body: SuggestRequest, user: CurrentUser) -> TaskSuggestion:
    return await actions.suggest_task(
        Runtime.of_request(request), user_id=user.id, prompt=body.prompt
    )


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
    body = await actions.list_tasks_body(
        Runtime.of_request(request),
        app_state(request).task_lists,
        user_id=user.id,
        tasks_version=user.tasks_version,
        page=page,
        state=state,
        is_active=is_active,
    )
    return Response(body, media_type="application/json")


@router.get("/{task_id}", response_model=TaskRead, summary="Get a task")
async def get_task(request: Request, task_id: uuid.UUID, user: CurrentUser) -> Response:
    body = await actions.get_task_body(
        Runtime.of_request(request),
        app_state(request).task_lists,
        user_id=user.id,
        tasks_version=user.tasks_version,
        task_id=task_id,
    )
    return Response(body, media_type="application/json")


async def _update(
    request: Request, task_id: uuid.UUID, body: TaskUpdate, user: CurrentUser
) -> TaskRead:
    return await actions.update_task(
        Runtime.of_request(request), user_id=user.id, task_id=task_id, data=body
    )


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
async def delete_task(request: Request, task_id: uuid.UUID, user: CurrentUser) -> Response:
    await actions.delete_task(Runtime.of_request(request), user_id=user.id, task_id=task_id)
    return Response(status_code=204)
