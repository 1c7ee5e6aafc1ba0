"""Routes under /admin (admin role: 403 otherwise, 401 without credentials)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from torale.admin import actions, service
from torale.admin.schemas import (
    AccountChange,
    AdminErrorRead,
    AdminExecutionRead,
    AdminTaskRead,
    AdminUserRead,
    ScheduleRead,
    StatsRead,
    WorkflowRead,
)
from torale.auth.deps import AdminUser
from torale.db.session import SessionDep
from torale.inputs import UtcDateTime
from torale.pages import Page
from torale.pagination import PageDep
from torale.runtime import Runtime
from torale.state import app_state
from torale.statuses import ExecutionStatus

router = APIRouter(prefix="/admin", tags=["admin"])


class TaskFields(BaseModel):
    """The task columns the admin list shows."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    search_query: str
    condition_description: str
    schedule: str
    timezone: str
    state: str
    paused_reason: str | None
    condition_met: bool
    next_run: datetime | None
    created_at: datetime


@router.get(
    "/temporal/schedules",
    summary="Every schedule",
    description="From the running scheduler: Temporal's schedules, or the embedded scheduler's "
    "view of the tasks (paused for tasks that are not active). Ordered by schedule id (Temporal) "
    "or next run (local).",
)
async def schedules(request: Request, _admin: AdminUser, page: PageDep) -> Page[ScheduleRead]:
    views, total = await app_state(request).scheduler.schedules(
        limit=page.limit, offset=page.offset
    )
    return Page.of(
        [ScheduleRead.model_validate(v, from_attributes=True) for v in views], total, page
    )


@router.get(
    "/temporal/workflows",
    summary="Recent and running runs",
    description="Temporal's RunTask workflows, or with the embedded scheduler its executions; "
    "newest first.",
)
async def workflows(request: Request, _admin: AdminUser, page: PageDep) -> Page[WorkflowRead]:
    views, total = await app_state(request).scheduler.runs(limit=page.limit, offset=page.offset)
    return Page.of(
        [WorkflowRead.model_validate(v, from_attributes=True) for v in views], total, page
    )


@router.get("/stats", summary="Instance statistics")
async def stats(_admin: AdminUser, session: SessionDep) -> StatsRead:
    return StatsRead.model_validate(await service.stats(session, now=datetime.now(UTC)))


@router.get(
    "/queries",
    summary="Every user's tasks",
    description="With owner email, run count and last run; newest first.",
)
async def queries(
    _admin: AdminUser,
    session: SessionDep,
    page: PageDep,
    active_only: Annotated[bool, Query(description="Only active tasks.")] = False,
    user_id: Annotated[uuid.UUID | None, Query(description="Only this user's.")] = None,
) -> Page[AdminTaskRead]:
    rows, total = await service.list_queries(
        session, page=page, active_only=active_only, user_id=user_id
    )
    items = [
        AdminTaskRead(
            **TaskFields.model_validate(task).model_dump(),
            owner_email=email,
            run_count=runs,
            last_run_at=last_run_at,
        )
        for task, email, runs, last_run_at in rows
    ]
    return Page.of(items, total, page)


@router.get("/executions", summary="Every execution", description="Newest first.")
async def executions(
    _admin: AdminUser,
    session: SessionDep,
    page: PageDep,
    status: Annotated[ExecutionStatus | None, Query()] = None,
    task_id: Annotated[uuid.UUID | None, Query()] = None,
    user_id: Annotated[uuid.UUID | None, Query()] = None,
    since: Annotated[
        UtcDateTime | None,
        Query(description="Created at or after. A date or a time without a zone is UTC."),
    ] = None,
    until: Annotated[
        UtcDateTime | None,
        Query(description="Created before. A date or a time without a zone is UTC."),
    ] = None,
) -> Page[AdminExecutionRead]:
    rows, total = await service.list_executions(
        session,
        page=page,
        status=status,
        task_id=task_id,
        user_id=user_id,
        since=since,
        until=until,
    )
    items = [
        AdminExecutionRead(
            id=e.id,
            task_id=e.task_id,
            task_name=name,
            user_id=e.user_id,
            user_email=email,
            status=e.status,
            trigger=e.trigger,
            created_at=e.created_at,
            started_at=e.started_at,
            completed_at=e.completed_at,
            condition_met=e.condition_met,
            error_message=e.error_message,
            notified=e.notification is not None,
            usage=e.usage,
        )
        for e, name, email in rows
    ]
    return Page.of(items, total, page)


@router.get(
    "/errors",
    summary="What failed",
    description="Failed executions and failed deliveries, newest first.",
)
async def errors(_admin: AdminUser, session: SessionDep, page: PageDep) -> Page[AdminErrorRead]:
    rows, total = await service.list_errors(session, page=page)
    items = [
        AdminErrorRead(
            kind=kind,
            id=row_id,
            task_id=task_id,
            task_name=name,
            user_id=user_id,
            user_email=email,
            occurred_at=occurred_at,
            error=error,
            channel_type=channel_type,
        )
        for kind, row_id, task_id, user_id, occurred_at, error, channel_type, name, email in rows
    ]
    return Page.of(items, total, page)


@router.get("/users", summary="Every user", description="With task counts; newest first.")
async def users(_admin: AdminUser, session: SessionDep, page: PageDep) -> Page[AdminUserRead]:
    rows, total = await service.list_users(session, page=page)
    return Page.of([actions.user_read(row) for row in rows], total, page)


@router.patch(
    "/users/{user_id}/deactivate",
    summary="Deactivate a user",
    description="Their keys and sign-in tokens get 403 at once and their active tasks are "
    "paused (activate resumes exactly those). You cannot deactivate yourself (409).",
)
async def deactivate(request: Request, user_id: uuid.UUID, admin: AdminUser) -> AccountChange:
    return await actions.deactivate_user(
        Runtime.of_request(request), user_id=user_id, actor_id=admin.id
    )


@router.patch(
    "/users/{user_id}/activate",
    summary="Activate a user",
    description="Undoes deactivate: they can sign in again, and the tasks deactivation paused "
    "run again from their next cron time.",
)
async def activate(request: Request, user_id: uuid.UUID, _admin: AdminUser) -> AccountChange:
    return await actions.activate_user(Runtime.of_request(request), user_id=user_id)
