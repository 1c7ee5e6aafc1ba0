"""Running a user's task and reading its runs, whoever asks (API route, CLI, MCP tool, web page).
Scoped to the owner: another user's task is a 404."""

from __future__ import annotations

import uuid
from datetime import datetime

from torale.db import locks
from torale.db.database import session_scope
from torale.engine.evaluate import EarlierCheck, EvaluationError, NoModelConfiguredError
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
from torale.executions.preview import ConditionResult, PreviewRequest, PreviewResponse
from torale.executions.schemas import ExecutionRead, Source, Usage
from torale.pages import Page
from torale.pagination import PageParams
from torale.runtime import Runtime
from torale.scheduling.base import SchedulerUnavailableError
from torale.statuses import ExecutionStatus, Trigger
from torale.tasks import service as tasks_service
from torale.watch import service as watch_service
from torale.watch.judge import NOTHING_TO_COMPARE
from torale.watch.schemas import DiffRead, SourceRead

# How much longer than a run a run-now waits with `wait` (for its queue slot and the record).
_WAIT_MARGIN_SECONDS = 30


async def run_now(
    rt: Runtime, *, user_id: uuid.UUID, task_id: uuid.UUID, wait: bool = False
) -> ExecutionRead:
    """Start a run outside the schedule: its execution, `pending` or `running` — or, with
    `wait`, as it is when the run has finished (at most the run time limit and a margin). If the
    task is running already, that run: no second one starts. 503 if the scheduler refuses (the
    execution is then failed, so that it does not block the task's next runs)."""
    async with session_scope(rt.sessions, rt.write_lock) as session:
        # 403 if the account was deactivated since the request authenticated (db.locks).
        await locks.lock_active_user(session, user_id)
        task = await tasks_service.get_task(session, user_id=user_id, task_id=task_id)
        execution, created = await lifecycle.start_execution(
            session,
            task_id=task.id,
            user_id=task.user_id,
            trigger=Trigger.MANUAL,
            status=ExecutionStatus.PENDING,
            # Pending until a slot is free: it may wait for one run ahead of it.
            lease=rt.run_engine.lease * 2,
        )
    if created:
        try:
            await rt.scheduler.run_now(task_id, execution.id)
        except SchedulerUnavailableError as exc:
            async with session_scope(rt.sessions, rt.write_lock) as session:
                await locks.lock_users(session, [user_id])
                await lifecycle.fail_unstarted(session, execution_id=execution.id, reason=str(exc))
            raise
    if wait:
        within = rt.settings.run_timeout_seconds + _WAIT_MARGIN_SECONDS
        await rt.scheduler.wait(execution.id, within=within)
    async with session_scope(rt.sessions, writes=False) as session:
        current = await service.get_execution(session, execution_id=execution.id)
    if current is None:
        raise NotFoundError("Task not found")  # deleted while running
    return ExecutionRead.model_validate(current)


async def list_executions(
    rt: Runtime,
    *,
    user_id: uuid.UUID,
    task_id: uuid.UUID,
    page: PageParams,
    notified_only: bool = False,
) -> Page[ExecutionRead]:
    """The task's runs, newest first; `notified_only`: those that met the condition or
    notified."""
    async with session_scope(rt.sessions, writes=False) as session:
        await tasks_service.get_task(session, user_id=user_id, task_id=task_id)  # 404
        rows, total = await service.list_executions(
            session, task_id=task_id, page=page, notified_only=notified_only
        )
        items = [ExecutionRead.model_validate(r) for r in rows]
    return Page[ExecutionRead].of(items, total, page)


async def get_execution(
    rt: Runtime, *, user_id: uuid.UUID, task_id: uuid.UUID, execution_id: uuid.UUID
) -> ExecutionRead:
    """One run of the user's task (404 for a run of another task)."""
    async with session_scope(rt.sessions, writes=False) as session:
        await tasks_service.get_task(session, user_id=user_id, task_id=task_id)
        execution = await service.get_execution(session, execution_id=execution_id)
        if execution is None or execution.task_id != task_id:
            raise NotFoundError("Execution not found")
        return ExecutionRead.model_validate(execution)


async def _compared_with(
    rt: Runtime, *, user_id: uuid.UUID | None, task_id: uuid.UUID
) -> tuple[uuid.UUID | None, dict[str, str], EarlierCheck | None]:
    """What a run of the user's task would compare with: its latest run that kept sources (id
    and texts) and its last successful check. Reads only; 404 if the task is not theirs."""
    if user_id is None:
        raise NotFoundError("Task not found")
    async with session_scope(rt.sessions, writes=False) as session:
        task = await tasks_service.get_task(session, user_id=user_id, task_id=task_id)
        found = await watch_service.baseline(session, task_id=task.id)
        last = await service.last_success(session, task_id=task.id)
        earlier = None
        if last is not None and last.result:
            earlier = EarlierCheck(
                answer=str(last.result.get("answer", "")),
                current_state=task.last_known_state,
                condition_met=task.condition_met,
                checked_at=last.completed_at or last.created_at,
            )
    execution_id, texts = found if found else (None, {})
    return execution_id, texts, earlier


async def preview(
    rt: Runtime, *, data: PreviewRequest, user_id: uuid.UUID | None = None
) -> PreviewResponse:
    """Run the engine once for an unsaved task — or, with `data.task_id`, for the edited form
    of one of the user's tasks, compared with its latest run as its next run would be; nothing
    is stored. 404 for another user's task; 422 for pages, a search provider or a model the
    server refuses (a model task where no model is configured included), 503 without a search
    provider's setting, 502 when a provider fails, 504 past the run time limit."""
    config = data.config.model_dump(exclude_none=True)
    targets = tasks_service.targets_of_input(data.urls)
    urls = [t.url for t in targets]
    query = data.search_query or ""
    rules = data.rules.model_dump() if data.rules else None
    change = data.change.model_dump() if data.change else None
    mode = tasks_service.resolve_mode(mode=data.mode, rules=rules, search_query=query)
    errors = tasks_service.url_errors(urls, rt.policy) + tasks_service.mode_errors(
        mode=mode,
        search_query=query,
        targets=targets,
        rules=rules,
        change=change,
        config=config,
        policy=rt.policy,
        asked=data.mode is not None,
    )
    if mode == "model":
        errors += tasks_service.source_errors(urls, config, rt.policy)
    errors += tasks_service.model_errors(config, rt.policy)
    errors += tasks_service.render_errors(
        render=data.render, screenshot=False, targets=targets, policy=rt.policy
    )
    if errors:
        raise FieldValidationError(errors)
    compared_with: uuid.UUID | None = None
    previous_texts: dict[str, str] = {}
    earlier: EarlierCheck | None = None
    if data.task_id is not None:
        compared_with, previous_texts, earlier = await _compared_with(
            rt, user_id=user_id, task_id=data.task_id
        )
    spec = TaskSpec(
        name="Preview",
        search_query=query,
        condition=data.condition_description or None,
        targets=list(dict.fromkeys(targets)),
        config=config,
        mode=mode,
        rules=rules,
        change=change,
        render=data.render,
    )
    try:
        outcome = await preview_run(
            rt.run_engine, spec, earlier=earlier, previous_texts=previous_texts
        )
    except (NoModelConfiguredError, SearchNotConfiguredError) as exc:
        raise ServiceUnavailableError(str(exc)) from None
    except (SearchError, EvaluationError, RunFailedError) as exc:
        raise UpstreamError(str(exc)) from None
    except TimeoutError:
        seconds = rt.settings.run_timeout_seconds
        raise UpstreamTimeoutError(f"The preview did not finish within {seconds:g} s") from None
    verdict = outcome.verdict
    answer, reasoning = verdict.answer, verdict.reasoning
    if mode == "change" and not any(s.target.key in previous_texts for s in outcome.snapshots):
        answer = reasoning = NOTHING_TO_COMPARE  # a preview records no baseline
    compared = any(s.target.key in previous_texts for s in outcome.snapshots)
    return PreviewResponse(
        answer=answer,
        condition_met=verdict.condition_met,
        current_state=verdict.current_state,
        reasoning=reasoning,
        grounding_sources=[Source(**s) for s in outcome.sources],
        inferred_condition=verdict.inferred_condition if spec.condition is None else None,
        usage=Usage(**outcome.usage),
        compared_with=compared_with if compared else None,
        diff=outcome.diff,
        conditions=[ConditionResult.model_validate(c) for c in outcome.checks],
    )


async def list_sources(
    rt: Runtime, *, user_id: uuid.UUID, task_id: uuid.UUID, execution_id: uuid.UUID
) -> list[SourceRead]:
    """The sources an execution of the user's task read, with their content hashes."""
    async with session_scope(rt.sessions, writes=False) as session:
        await tasks_service.get_task(session, user_id=user_id, task_id=task_id)  # 404 if not theirs
        return await watch_service.sources(session, task_id=task_id, execution_id=execution_id)


async def screenshot(
    rt: Runtime, *, user_id: uuid.UUID, task_id: uuid.UUID, execution_id: uuid.UUID, position: int
) -> bytes:
    """The PNG screenshot kept for a source of an execution of the user's task."""
    async with session_scope(rt.sessions, writes=False) as session:
        await tasks_service.get_task(session, user_id=user_id, task_id=task_id)  # 404 if not theirs
        return await watch_service.screenshot(
            session, task_id=task_id, execution_id=execution_id, position=position
        )


async def screenshots_of_runs(
    rt: Runtime, *, user_id: uuid.UUID, task_id: uuid.UUID, execution_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[int, str]]]:
    """Which of these runs of the user's task kept screenshots: (position, URL) of each page
    with one, for the pages that link them (`screenshot` serves each)."""
    async with session_scope(rt.sessions, writes=False) as session:
        await tasks_service.get_task(session, user_id=user_id, task_id=task_id)  # 404 if not theirs
        return await watch_service.screenshots_of_runs(
            session, task_id=task_id, execution_ids=execution_ids
        )


async def diff(
    rt: Runtime,
    *,
    user_id: uuid.UUID,
    task_id: uuid.UUID,
    from_id: uuid.UUID | None = None,
    to_id: uuid.UUID | None = None,
) -> DiffRead:
    """The diff between two executions of the user's task (default: its last two with
    sources)."""
    async with session_scope(rt.sessions, writes=False) as session:
        await tasks_service.get_task(session, user_id=user_id, task_id=task_id)
        return await watch_service.diff(session, task_id=task_id, from_id=from_id, to_id=to_id)


async def changed_runs(
    rt: Runtime, *, user_id: uuid.UUID, task_id: uuid.UUID, since: datetime
) -> dict[uuid.UUID, uuid.UUID]:
    """The user's task's runs since `since` that read something different from the run
    before them, each with that run (the two a diff compares)."""
    async with session_scope(rt.sessions, writes=False) as session:
        await tasks_service.get_task(session, user_id=user_id, task_id=task_id)
        return await watch_service.changed_runs(session, task_id=task_id, since=since)
