"""Routes under /admin (admin role: 403 otherwise, 401 without credentials)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from torale.admin.schemas import ScheduleRead, WorkflowRead
from torale.auth.deps import AdminUser
from torale.pagination import Page, PageDep
from torale.state import app_state

router = APIRouter(prefix="/admin", tags=["admin"])


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
    return Page(
        items=[ScheduleRead.model_validate(v, from_attributes=True) for v in views],
        total=total,
        page=page.page,
        limit=page.limit,
    )


@router.get(
    "/temporal/workflows",
    summary="Recent and running runs",
    description="Temporal's RunTask workflows, or with the embedded scheduler its executions; "
    "newest first.",
)
async def workflows(request: Request, _admin: AdminUser, page: PageDep) -> Page[WorkflowRead]:
    views, total = await app_state(request).scheduler.runs(limit=page.limit, offset=page.offset)
    return Page(
        items=[WorkflowRead.model_validate(v, from_attributes=True) for v in views],
        total=total,
        page=page.page,
        limit=page.limit,
    )
