"""Task pages: the list, new and edit (with live schedule and preview), the task page with its
history, run now, pause/resume and delete. Every change goes through the same actions as the
API (tasks.actions, executions.actions); nothing here decides a rule."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from torale.db.database import session_scope
from torale.errors import (
    FieldValidationError,
    NotFoundError,
    ToraleError,
    validation_error_items,
)
from torale.executions import actions as run_actions
from torale.executions.preview import PreviewRequest
from torale.executions.schemas import ExecutionRead
from torale.inputs import Text
from torale.notify import service as notify_service
from torale.pages import Page
from torale.pagination import PageParams
from torale.runtime import Runtime
from torale.state import app_state
from torale.statuses import ExecutionStatus, TaskState
from torale.tasks import actions
from torale.tasks.schedule import InvalidCronError, is_valid_timezone
from torale.tasks.schemas import TaskRead
from torale.tasks.service import NO_BROWSER_FOR_RENDER
from torale.web import watch_form
from torale.web.page_cache import task_page_key, tasks_page_key
from torale.web.rendering import html_response, is_htmx, render, render_html
from torale.web.routing import WebRoute
from torale.web.task_form import (
    HOUR_CHOICES,
    NOTIFY_BEHAVIORS,
    RULE_ROWS,
    URL_ROWS,
    WEEKDAYS,
    TaskForm,
    field_label,
    next_runs,
)
from torale.web.viewer import Viewer, ViewerDep

router = APIRouter(route_class=WebRoute, include_in_schema=False)
LIST_LIMIT = 50
HISTORY_LIMIT = 20
_FINISHED = (ExecutionStatus.SUCCESS, ExecutionStatus.FAILED)


def _model_available(request: Request, task: TaskRead | None = None) -> bool:
    """Whether model tasks can run here: a default model, or the one this task names."""
    return Runtime.of_request(request).policy.model_configured or bool(task and task.config.model)


def _form_context(request: Request, form: TaskForm, task: TaskRead | None = None) -> dict[str, Any]:
    return {
        "browser_available": Runtime.of_request(request).policy.browser,
        "no_browser_hint": NO_BROWSER_FOR_RENDER,
        "form": form,
        "task": task,
        "action": f"/tasks/{task.id}/edit" if task else "/tasks/new",
        "model_available": _model_available(request, task),
        "modes": watch_form.MODES,
        "no_model_hint": watch_form.NO_MODEL_HINT,
        "text_ops": watch_form.TEXT_OPS,
        "number_ops": watch_form.NUMBER_OPS,
        "change_only": watch_form.CHANGE_ONLY,
        "max_rows": watch_form.MAX_ROWS,
        "hour_choices": HOUR_CHOICES,
        "weekdays": WEEKDAYS,
        "behaviors": NOTIFY_BEHAVIORS,
        "title": f"Edit {task.name}" if task else "New task",
    }


_PARTS = {URL_ROWS: "fragments/url_rows.html", RULE_ROWS: "fragments/rule_rows.html"}


def _row_action(
    request: Request, form: TaskForm, action: str, task: TaskRead | None
) -> Response | None:
    """A row added or removed (nothing saved): with htmx only the rows, else the whole form
    again, its values kept. None when the post is a save."""
    part = form.apply(action)
    if part is None:
        return None
    context = _form_context(request, form, task)
    if is_htmx(request):
        return render(request, _PARTS[part], context)
    return render(request, "task_form.html", context)


# --- the list ---------------------------------------------------------------------------------


@router.get("/tasks")
async def tasks_page(
    request: Request, viewer: ViewerDep, state: Text = "", q: Text = "", page: int = 1
) -> Response:
    wanted = TaskState(state) if state in {s.value for s in TaskState} else None
    fragment = is_htmx(request) and request.headers.get("hx-target") == "task-list"
    key = tasks_page_key(viewer.user, state=wanted, text=q, page=max(page, 1), fragment=fragment)
    pages = app_state(request).pages
    cached = pages.get(key)
    if cached is None:
        context = await _tasks_context(request, viewer, wanted, q, key.page)
        template = "fragments/task_list.html" if fragment else "tasks.html"
        cached = pages.put(key, render_html(request, template, context, pages.placeholder))
    return html_response(cached.fill(viewer.csrf_token))


async def _tasks_context(
    request: Request, viewer: Viewer, wanted: TaskState | None, q: str, page: int
) -> dict[str, Any]:
    rt = Runtime.of_request(request)
    params = PageParams(page=page, limit=LIST_LIMIT)
    text = q.strip()[:200]
    if text:
        listing = await actions.list_tasks(
            rt, user_id=viewer.user.id, page=params, state=wanted, text=text
        )
    else:  # the API's cached pages, current by the owner's tasks_version
        body = await actions.list_tasks_body(
            rt,
            app_state(request).task_lists,
            user_id=viewer.user.id,
            tasks_version=viewer.user.tasks_version,
            page=params,
            state=wanted,
        )
        listing = Page[TaskRead].model_validate_json(body)
    return {
        "tasks": listing.items,
        "total": listing.total,
        "page": listing.page,
        "pages": max(1, -(-listing.total // LIST_LIMIT)),
        "state": wanted.value if wanted else "",
        "q": q,
        "states": [s.value for s in TaskState],
        "title": "Tasks",
    }


# --- new and edit -----------------------------------------------------------------------------


@router.get("/tasks/new")
async def new_task_page(request: Request, viewer: ViewerDep) -> Response:
    form = TaskForm(mode="model" if _model_available(request) else "change")
    return render(request, "task_form.html", _form_context(request, form))


@router.post("/tasks/new")
async def create_task(request: Request, viewer: ViewerDep) -> Response:
    posted = await request.form()
    form = TaskForm.from_form(posted)
    if rows := _row_action(request, form, str(posted.get("_action", "")), None):
        return rows
    data = form.create()
    if data is not None:
        try:
            task = await actions.create_task(
                Runtime.of_request(request), user_id=viewer.user.id, data=data
            )
        except FieldValidationError as exc:
            form.refused(exc)
        else:
            return RedirectResponse(f"/tasks/{task.id}", status_code=303)
    return render(request, "task_form.html", _form_context(request, form), status_code=422)


async def _task(request: Request, viewer: Viewer, task_id: uuid.UUID) -> TaskRead:
    return await actions.get_task(
        Runtime.of_request(request), user_id=viewer.user.id, task_id=task_id
    )


@router.get("/tasks/{task_id}/edit")
async def edit_task_page(request: Request, viewer: ViewerDep, task_id: uuid.UUID) -> Response:
    task = await _task(request, viewer, task_id)
    return render(request, "task_form.html", _form_context(request, TaskForm.from_task(task), task))


@router.post("/tasks/{task_id}/edit")
async def update_task(request: Request, viewer: ViewerDep, task_id: uuid.UUID) -> Response:
    task = await _task(request, viewer, task_id)
    posted = await request.form()
    form = TaskForm.from_form(posted, original=task)
    if rows := _row_action(request, form, str(posted.get("_action", "")), task):
        return rows
    data = form.update()
    if data is not None:
        try:
            await actions.update_task(
                Runtime.of_request(request), user_id=viewer.user.id, task_id=task_id, data=data
            )
        except FieldValidationError as exc:
            form.refused(exc)
        else:
            return RedirectResponse(f"/tasks/{task_id}", status_code=303)
    return render(request, "task_form.html", _form_context(request, form, task), status_code=422)


@router.get("/tasks/schedule-preview")
async def schedule_preview(request: Request, viewer: ViewerDep) -> Response:
    """The next three run times of the schedule the form describes, as the user types."""
    form = TaskForm.from_form(request.query_params)  # type: ignore[arg-type]
    timezone = form.timezone.strip() or "UTC"
    context: dict[str, Any] = {"timezone": timezone, "cron": form.schedule()}
    if not is_valid_timezone(timezone):
        context["error"] = "Unknown time zone (use a name such as Europe/Berlin)"
    else:
        try:
            context["runs"] = next_runs(form.schedule(), timezone)
        except InvalidCronError as exc:
            context["error"] = str(exc)
    return render(request, "fragments/next_runs.html", context)


@router.post("/tasks/preview")
async def preview(request: Request, viewer: ViewerDep) -> Response:
    """Run the task as the form describes it, unsaved, and show the verdict with its sources
    (for a change task: the text it would watch; for rules: each condition's result)."""
    form = TaskForm.from_form(await request.form())
    data = form.data()
    context: dict[str, Any] = {"mode": form.shown_mode, "field_label": field_label}
    try:
        previewed = {k: data[k] for k in _PREVIEWED if k in data}
        # From the edit page: compare with the task's latest run, as its next run would.
        previewed["task_id"] = request.query_params.get("task_id") or None
        body = PreviewRequest.model_validate(previewed)
        context["result"] = await run_actions.preview(
            Runtime.of_request(request), data=body, user_id=viewer.user.id
        )
    except ValidationError as exc:
        form.add_errors(validation_error_items(exc.errors()))
        context["errors"] = form.errors
    except FieldValidationError as exc:
        form.refused(exc)
        context["errors"] = form.errors
    except ToraleError as exc:
        context["failure"] = exc.detail
    return render(request, "fragments/preview.html", context)


# The fields of a task that a preview takes (executions.preview.PreviewRequest).
_PREVIEWED = (
    "search_query",
    "condition_description",
    "urls",
    "mode",
    "rules",
    "change",
    "render",
)


# --- one task ---------------------------------------------------------------------------------


async def _deliveries(
    request: Request, viewer: Viewer, task_id: uuid.UUID
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Each execution's notifications: channel, target and how its delivery went."""
    rt = Runtime.of_request(request)
    async with session_scope(rt.sessions, writes=False) as session:
        rows, _ = await notify_service.list_attempts(
            session, user_id=viewer.user.id, page=PageParams(page=1, limit=100), task_id=task_id
        )
    by_execution: dict[uuid.UUID, dict[uuid.UUID, dict[str, Any]]] = defaultdict(dict)
    for attempt, delivery in rows:  # newest attempt first: the first seen is the latest
        seen = by_execution[delivery.execution_id]
        if delivery.id not in seen:
            seen[delivery.id] = {
                "channel": delivery.channel_type,
                "status": str(delivery.status),
                "attempts": delivery.attempts,
                "status_code": attempt.status_code,
                "error": attempt.error,
            }
    return {execution: list(found.values()) for execution, found in by_execution.items()}


async def _history(request: Request, viewer: Viewer, task_id: uuid.UUID) -> dict[str, Any]:
    runs = await run_actions.list_executions(
        Runtime.of_request(request),
        user_id=viewer.user.id,
        task_id=task_id,
        page=PageParams(page=1, limit=HISTORY_LIMIT),
    )
    changed: dict[uuid.UUID, uuid.UUID] = {}
    if runs.items:
        changed = await run_actions.changed_runs(
            Runtime.of_request(request),
            user_id=viewer.user.id,
            task_id=task_id,
            since=min(run.created_at for run in runs.items),
        )
    screenshots = await run_actions.screenshots_of_runs(
        Runtime.of_request(request),
        user_id=viewer.user.id,
        task_id=task_id,
        execution_ids=[run.id for run in runs.items],
    )
    return {
        "runs": runs.items,
        "runs_total": runs.total,
        "screenshots_by_run": screenshots,  # run → (position, URL) of the pages it kept a PNG of
        "deliveries": await _deliveries(request, viewer, task_id),
        "changed": changed,  # run → the run before it, for the runs that read something new
    }


@router.get("/tasks/{task_id}")
async def task_page(request: Request, viewer: ViewerDep, task_id: uuid.UUID) -> Response:
    state = app_state(request)
    key = task_page_key(viewer.user, task_id, state.changes)
    cached = state.pages.get(key)
    if cached is None:
        task = await _task(request, viewer, task_id)  # another user's: 404, nothing cached
        context = {"task": task, "title": task.name} | await _history(request, viewer, task_id)
        html = render_html(request, "task.html", context, state.pages.placeholder)
        cached = state.pages.put(key, html)
    return html_response(cached.fill(viewer.csrf_token))


@router.get("/tasks/{task_id}/header")
async def task_header(request: Request, viewer: ViewerDep, task_id: uuid.UUID) -> Response:
    """The title, state and actions (refreshed when a run finishes: it may complete the task)."""
    task = await _task(request, viewer, task_id)
    return render(request, "fragments/task_header.html", {"task": task})


@router.get("/tasks/{task_id}/history")
async def task_history(request: Request, viewer: ViewerDep, task_id: uuid.UUID) -> Response:
    task = await _task(request, viewer, task_id)
    context = {"task": task} | await _history(request, viewer, task_id)
    return render(request, "fragments/history.html", context)


@router.get("/tasks/{task_id}/diff")
async def task_diff(
    request: Request,
    viewer: ViewerDep,
    task_id: uuid.UUID,
    from_: Annotated[uuid.UUID, Query(alias="from")],
    to: uuid.UUID,
) -> Response:
    """What changed between two runs of the task: the API's diff (one source after another,
    added and removed lines marked). The rows of the history open it in place with htmx; without
    JavaScript it is a page of its own."""
    rt = Runtime.of_request(request)
    task = await _task(request, viewer, task_id)
    diff = await run_actions.diff(
        rt, user_id=viewer.user.id, task_id=task_id, from_id=from_, to_id=to
    )
    before = await run_actions.get_execution(
        rt, user_id=viewer.user.id, task_id=task_id, execution_id=from_
    )
    after = await run_actions.get_execution(
        rt, user_id=viewer.user.id, task_id=task_id, execution_id=to
    )
    context = {
        "task": task,
        "diff": diff,
        "before": before,
        "after": after,
        "title": f"What changed · {task.name}",
    }
    if is_htmx(request):
        return render(request, "fragments/diff.html", context)
    return render(request, "task_diff.html", context)


async def _run_fragment(
    request: Request, viewer: Viewer, task: TaskRead, run: ExecutionRead
) -> Response:
    finished = run.status in _FINISHED
    # When the run is done, the history (and the task's answer) refresh themselves.
    headers = {"HX-Trigger": "run-finished"} if finished else None
    shots: dict[uuid.UUID, list[tuple[int, str]]] = {}
    if run.status == ExecutionStatus.SUCCESS:
        shots = await run_actions.screenshots_of_runs(
            Runtime.of_request(request),
            user_id=viewer.user.id,
            task_id=task.id,
            execution_ids=[run.id],
        )
    return render(
        request,
        "fragments/run_status.html",
        {"task": task, "run": run, "finished": finished, "screenshots_by_run": shots},
        headers=headers,
    )


@router.post("/tasks/{task_id}/run")
async def run_now(request: Request, viewer: ViewerDep, task_id: uuid.UUID) -> Response:
    rt = Runtime.of_request(request)
    run = await run_actions.run_now(rt, user_id=viewer.user.id, task_id=task_id)
    if not is_htmx(request):
        return RedirectResponse(f"/tasks/{task_id}", status_code=303)
    return await _run_fragment(request, viewer, await _task(request, viewer, task_id), run)


@router.get("/tasks/{task_id}/runs/{execution_id}")
async def run_status(
    request: Request, viewer: ViewerDep, task_id: uuid.UUID, execution_id: uuid.UUID
) -> Response:
    task = await _task(request, viewer, task_id)  # 404 for another user's
    runs = await run_actions.list_executions(
        Runtime.of_request(request),
        user_id=viewer.user.id,
        task_id=task_id,
        page=PageParams(page=1, limit=HISTORY_LIMIT),
    )
    run = next((r for r in runs.items if r.id == execution_id), None)
    if run is None:
        raise NotFoundError("That run is not in this task's recent history")
    return await _run_fragment(request, viewer, task, run)


@router.get("/tasks/{task_id}/runs/{execution_id}/screenshots/{position}")
async def run_screenshot(
    request: Request,
    viewer: ViewerDep,
    task_id: uuid.UUID,
    execution_id: uuid.UUID,
    position: Annotated[int, Path(ge=0, le=1000)],
) -> Response:
    """The PNG of a page a run read with the browser (the API's executions.actions.screenshot:
    another user's, or a source without one, is a 404 page)."""
    image = await run_actions.screenshot(
        Runtime.of_request(request),
        user_id=viewer.user.id,
        task_id=task_id,
        execution_id=execution_id,
        position=position,
    )
    # Private: it shows what the user watches. Immutable: a run's screenshot never changes.
    headers = {"Cache-Control": "private, max-age=86400, immutable"}
    return Response(image, media_type="image/png", headers=headers)


async def _set_state(request: Request, viewer: Viewer, task_id: uuid.UUID, pause: bool) -> Response:
    rt = Runtime.of_request(request)
    change = actions.pause_task if pause else actions.resume_task
    task = await change(rt, user_id=viewer.user.id, task_id=task_id)
    if is_htmx(request):
        return render(request, "fragments/task_header.html", {"task": task})
    return RedirectResponse(f"/tasks/{task_id}", status_code=303)


@router.post("/tasks/{task_id}/pause")
async def pause(request: Request, viewer: ViewerDep, task_id: uuid.UUID) -> Response:
    return await _set_state(request, viewer, task_id, pause=True)


@router.post("/tasks/{task_id}/resume")
async def resume(request: Request, viewer: ViewerDep, task_id: uuid.UUID) -> Response:
    return await _set_state(request, viewer, task_id, pause=False)


@router.get("/tasks/{task_id}/delete")
async def confirm_delete(request: Request, viewer: ViewerDep, task_id: uuid.UUID) -> Response:
    task = await _task(request, viewer, task_id)
    return render(request, "task_delete.html", {"task": task, "title": f"Delete {task.name}"})


@router.post("/tasks/{task_id}/delete")
async def delete(request: Request, viewer: ViewerDep, task_id: uuid.UUID) -> Response:
    await actions.delete_task(Runtime.of_request(request), user_id=viewer.user.id, task_id=task_id)
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": "/tasks"})
    return RedirectResponse("/tasks", status_code=303)
