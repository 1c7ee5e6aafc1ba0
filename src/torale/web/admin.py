"""Admin pages under /manage (the JSON admin API has /admin), for admins only: anyone else
gets the 404 of a page that does not exist. Stats with executions per day, users with
deactivate/activate, errors, schedules and runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from torale.admin import actions, service
from torale.db.database import session_scope
from torale.pagination import PageParams
from torale.runtime import Runtime
from torale.web.rendering import render
from torale.web.routing import WebRoute
from torale.web.viewer import AdminViewerDep

router = APIRouter(route_class=WebRoute, include_in_schema=False)
_PAGE = PageParams(page=1, limit=50)
CHART_HEIGHT = 160
BAR_STEP = 60  # viewBox units per day


def _chart(days: list[tuple[str, int, int]]) -> dict[str, Any]:
    """Bar geometry for the executions-per-day SVG (succeeded stacked on failed)."""
    top = max((ok + failed for _, ok, failed in days), default=0) or 1
    bars = []
    for index, (day, ok, failed) in enumerate(days):
        failed_h = round(failed / top * CHART_HEIGHT)
        ok_h = round(ok / top * CHART_HEIGHT)
        bars.append(
            {
                "x": index * BAR_STEP + 12,
                "day": day,
                "label": day[5:],
                "ok": ok,
                "failed": failed,
                "failed_y": CHART_HEIGHT - failed_h,
                "failed_h": failed_h,
                "ok_y": CHART_HEIGHT - failed_h - ok_h,
                "ok_h": ok_h,
            }
        )
    return {"bars": bars, "width": len(days) * BAR_STEP + 24, "height": CHART_HEIGHT, "top": top}


@router.get("/manage")
async def overview(request: Request, viewer: AdminViewerDep) -> Response:
    rt = Runtime.of_request(request)
    now = datetime.now(UTC)
    async with session_scope(rt.sessions, writes=False) as session:
        stats = await service.stats(session, now=now)
        days = await service.executions_per_day(session, now=now)
    return render(
        request,
        "admin_overview.html",
        {"stats": stats, "chart": _chart(days), "title": "Admin", "section": "overview"},
    )


@router.get("/manage/users")
async def users(request: Request, viewer: AdminViewerDep) -> Response:
    rt = Runtime.of_request(request)
    async with session_scope(rt.sessions, writes=False) as session:
        rows, total = await service.list_users(session, page=_PAGE)
    return render(
        request,
        "admin_users.html",
        {
            "users": [actions.user_read(row) for row in rows],
            "total": total,
            "title": "Users",
            "section": "users",
        },
    )


@router.post("/manage/users/{user_id}/deactivate")
async def deactivate(request: Request, viewer: AdminViewerDep, user_id: uuid.UUID) -> Response:
    await actions.deactivate_user(
        Runtime.of_request(request), user_id=user_id, actor_id=viewer.user.id
    )
    return RedirectResponse("/manage/users", status_code=303)


@router.post("/manage/users/{user_id}/activate")
async def activate(request: Request, viewer: AdminViewerDep, user_id: uuid.UUID) -> Response:
    await actions.activate_user(Runtime.of_request(request), user_id=user_id)
    return RedirectResponse("/manage/users", status_code=303)


@router.get("/manage/errors")
async def errors(request: Request, viewer: AdminViewerDep) -> Response:
    rt = Runtime.of_request(request)
    async with session_scope(rt.sessions, writes=False) as session:
        rows, total = await service.list_errors(session, page=_PAGE)
    names = ("kind", "id", "task_id", "user_id", "occurred_at", "error", "channel_type")
    errors = [dict(zip((*names, "name", "email"), row, strict=True)) for row in rows]
    return render(
        request,
        "admin_errors.html",
        {"rows": errors, "total": total, "title": "Errors", "section": "errors"},
    )


@router.get("/manage/runs")
async def runs(request: Request, viewer: AdminViewerDep) -> Response:
    rt = Runtime.of_request(request)
    async with session_scope(rt.sessions, writes=False) as session:
        schedules, schedules_total = await service.list_queries(
            session, page=_PAGE, active_only=True, user_id=None
        )
        executions, executions_total = await service.list_executions(
            session, page=_PAGE, status=None, task_id=None, user_id=None, since=None, until=None
        )
    return render(
        request,
        "admin_runs.html",
        {
            "schedules": schedules,
            "schedules_total": schedules_total,
            "executions": executions,
            "executions_total": executions_total,
            "title": "Schedules and runs",
            "section": "runs",
        },
    )
