"""Routes that run tasks and show their runs: preview, run-now, executions, notifications."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from torale.auth.deps import CurrentUser
from torale.executions import actions
from torale.executions.preview import PreviewRequest, PreviewResponse
from torale.executions.schemas import ExecutionRead
from torale.pages import Page
from torale.pagination import PageDep
from torale.runtime import Runtime

router = APIRouter(prefix="/api/v1/tasks", tags=["executions"])


@router.post(
    "/preview",
    summary="Try a task without saving it",
    description="Runs the engine once (search, read, evaluate — or, for `change` and `rules`, "
    "read and compare) and stores nothing. With `task_id` (one of your tasks) it compares "
    "with that task's latest run, as the task's next run would. Counts against your rate "
    "limit. 404 for another user's task, 503 when the server has no model or its default "
    "search provider lacks its setting, 502 when a search or model provider fails (or a "
    "page cannot be read), 504 past the run time limit.",
)
async def preview(request: Request, body: PreviewRequest, user: CurrentUser) -> PreviewResponse:
    return await actions.preview(Runtime.of_request(request), data=body, user_id=user.id)


@router.post(
    "/{task_id}/execute",
    summary="Run a task now",
    description="Starts a run outside the schedule and answers its execution (`pending` or "
    "`running`). If the task is running already, the answer is that run: no second one starts. "
    "With `?wait=true` the answer comes when the run has finished (at most the run time limit).",
)
async def execute(
    request: Request,
    task_id: uuid.UUID,
    user: CurrentUser,
    wait: Annotated[bool, Query(description="Answer when the run has finished.")] = False,
) -> ExecutionRead:
    return await actions.run_now(
        Runtime.of_request(request), user_id=user.id, task_id=task_id, wait=wait
    )


@router.get("/{task_id}/executions", summary="A task's runs", description="Newest first.")
async def list_executions(
    request: Request, task_id: uuid.UUID, user: CurrentUser, page: PageDep
) -> Page[ExecutionRead]:
    return await actions.list_executions(
        Runtime.of_request(request), user_id=user.id, task_id=task_id, page=page
    )


@router.get(
    "/{task_id}/notifications",
    summary="A task's runs that met the condition or notified",
    description="Newest first.",
)
async def list_notifications(
    request: Request, task_id: uuid.UUID, user: CurrentUser, page: PageDep
) -> Page[ExecutionRead]:
    return await actions.list_executions(
        Runtime.of_request(request), user_id=user.id, task_id=task_id, page=page, notified_only=True
    )
