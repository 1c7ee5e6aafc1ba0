"""Routes that run tasks and show their runs: preview, run-now, executions, notifications."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from torale.auth.deps import CurrentUser
from torale.db.engine import session_scope
from torale.db.session import SessionDep
from torale.engine.evaluate import EvaluationError, NoModelConfiguredError
from torale.engine.run import RunFailedError, TaskSpec, preview_run
from torale.engine.search.base import SearchError, SearchNotConfiguredError
from torale.errors import (
    FieldValidationError,
    NotFoundError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from torale.executions import lifecycle, service
from torale.executions.preview import PreviewRequest, PreviewResponse
from torale.executions.schemas import ExecutionRead, Source, Usage
from torale.pages import Page
from torale.pagination import PageDep
from torale.scheduling.base import SchedulerUnavailableError
from torale.state import app_state
from torale.statuses import ExecutionStatus, Trigger
from torale.tasks import service as tasks_service

router = APIRouter(prefix="/api/v1/tasks", tags=["executions"])


@router.post(
    "/preview",
    summary="Try a task without saving it",
    description="Runs the engine once (search, read, evaluate) and stores nothing. Counts "
    "against your rate limit. 503 when the server has no model or its default search "
    "provider lacks its setting, 502 when a search or model "
    "provider fails, 504 past the run time limit.",
)
async def preview(request: Request, body: PreviewRequest, user: CurrentUser) -> PreviewResponse:
    state = app_state(request)
    policy = tasks_service.TaskPolicy.from_settings(state.settings)
    config = body.config.model_dump(exclude_none=True)
    errors = tasks_service.url_errors(body.urls, policy) + tasks_service.source_errors(
        body.urls, config, policy
    )
    if errors:
        raise FieldValidationError(errors)
    spec = TaskSpec(
        name="Preview",
        search_query=body.search_query,
        condition=body.condition_description or None,
        urls=list(dict.fromkeys(body.urls)),
        config=config,
    )
    try:
        outcome = await preview_run(state.run_engine, spec)
    except (NoModelConfiguredError, SearchNotConfiguredError) as exc:
        raise ServiceUnavailableError(str(exc)) from None
    except (SearchError, EvaluationError, RunFailedError) as exc:
        raise UpstreamError(str(exc)) from None
    except TimeoutError:
        seconds = state.settings.run_timeout_seconds
        raise UpstreamTimeoutError(f"The preview did not finish within {seconds:g} s") from None
    verdict = outcome.verdict
    return PreviewResponse(
        answer=verdict.answer,
        condition_met=verdict.condition_met,
        current_state=verdict.current_state,
        reasoning=verdict.reasoning,
        grounding_sources=[Source(**s) for s in outcome.sources],
        inferred_condition=verdict.inferred_condition if spec.condition is None else None,
        usage=Usage(**outcome.usage),
    )


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
    state = app_state(request)
    async with session_scope(state.sessions, state.write_lock) as session:
        task = await tasks_service.get_task(session, user_id=user.id, task_id=task_id)
        execution, created = await lifecycle.start_execution(
            session,
            task_id=task.id,
            user_id=task.user_id,
            trigger=Trigger.MANUAL,
            status=ExecutionStatus.PENDING,
            lease=state.run_engine.lease * 2,
        )
    if created:
        try:
            await state.scheduler.run_now(task_id, execution.id)
        except SchedulerUnavailableError as exc:
            # Not started: it must not stay pending and block the task's next runs.
            async with session_scope(state.sessions, state.write_lock) as session:
                await lifecycle.fail_unstarted(session, execution_id=execution.id, reason=str(exc))
            raise
    if wait:
        await state.scheduler.wait(execution.id, within=state.settings.run_timeout_seconds + 30)
    async with session_scope(state.sessions) as session:
        current = await service.get_execution(session, execution_id=execution.id)
    if current is None:
        raise NotFoundError("Task not found")  # deleted while running
    return ExecutionRead.model_validate(current)


async def _page(
    session: SessionDep,
    user_id: uuid.UUID,
    task_id: uuid.UUID,
    page: PageDep,
    *,
    notified_only: bool,
) -> Page[ExecutionRead]:
    await tasks_service.get_task(session, user_id=user_id, task_id=task_id)  # 404 if not yours
    rows, total = await service.list_executions(
        session, task_id=task_id, page=page, notified_only=notified_only
    )
    return Page(
        items=[ExecutionRead.model_validate(r) for r in rows],
        total=total,
        page=page.page,
        limit=page.limit,
    )


@router.get("/{task_id}/executions", summary="A task's runs", description="Newest first.")
async def list_executions(
    task_id: uuid.UUID, user: CurrentUser, session: SessionDep, page: PageDep
) -> Page[ExecutionRead]:
    return await _page(session, user.id, task_id, page, notified_only=False)


@router.get(
    "/{task_id}/notifications",
    summary="A task's runs that met the condition or notified",
    description="Newest first.",
)
async def list_notifications(
    task_id: uuid.UUID, user: CurrentUser, session: SessionDep, page: PageDep
) -> Page[ExecutionRead]:
    return await _page(session, user.id, task_id, page, notified_only=True)
