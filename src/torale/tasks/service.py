"""Task rules and queries. Every query is scoped to the owner: another user's task is a 404."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, get_args
from urllib.parse import urlsplit

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from torale.config import Settings
from torale.db.models import Task, columns_of, url_targets
from torale.engine.evaluate import NO_MODEL_FOR_MODE, model_problem
from torale.engine.search.base import SearchProviderName
from torale.engine.search.registry import missing_setting
from torale.errors import FieldValidationError, NotFoundError, field_error
from torale.net import OutboundPolicy
from torale.notify.channels import AnyChannel, restore_masked_secrets, stored_channels
from torale.notify.validation import channel_errors, url_error
from torale.pagination import PageParams, paginate_rows
from torale.statuses import TaskState
from torale.tasks import transitions
from torale.tasks.schedule import min_interval_seconds
from torale.tasks.schemas import TaskCreate, TaskUpdate, UrlTarget
from torale.watch.targets import Target, stored_targets, targets_of

_NOT_NULL = (
    "name",
    "search_query",
    "urls",
    "schedule",
    "timezone",
    "notify_behavior",
    "notifications",
    "config",
    "state",
    "is_active",
    "mode",
    "render",
    "screenshot",
)


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """The operator settings task validation depends on."""

    min_schedule_seconds: int
    pages: OutboundPolicy  # where a task's pages may be read from
    notifications: OutboundPolicy  # where its notifications may go
    # Search providers this server cannot use, with the reason (a missing key or URL).
    unusable_search: tuple[tuple[str, str], ...] = ()
    # Whether the server has a default model (TORALE_MODEL): decides the default mode.
    model_configured: bool = True
    # Models a task may choose (TORALE_ALLOWED_MODELS and TORALE_MODEL); None: any.
    allowed_models: tuple[str, ...] | None = ()
    # Whether pages may be read with a browser (TORALE_BROWSER_PATH or TORALE_BROWSER_URL).
    browser: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> TaskPolicy:
        unusable = ((n, missing_setting(n, settings)) for n in get_args(SearchProviderName))
        return cls(
            min_schedule_seconds=settings.min_schedule_seconds,
            pages=OutboundPolicy.from_settings(settings, purpose="pages"),
            notifications=OutboundPolicy.from_settings(settings, purpose="notifications"),
            unusable_search=tuple((n, why) for n, why in unusable if why),
            model_configured=bool(settings.model),
            allowed_models=settings.allowed_model_list,
            browser=settings.browser_enabled,
        )


def _schedule_errors(schedule: str, policy: TaskPolicy) -> list[dict[str, Any]]:
    gap = min_interval_seconds(schedule)
    if gap >= policy.min_schedule_seconds:
        return []
    return [
        field_error(
            ["body", "schedule"],
            f"Schedule runs too often: runs can be {gap} seconds apart, and this server's "
            f"minimum is {policy.min_schedule_seconds} seconds",
            "schedule_too_frequent",
        )
    ]


def targets_of_input(urls: list[str | UrlTarget]) -> list[Target]:
    """The URL targets a request's `urls` names, in order (repeats kept: see stored_targets)."""
    return [
        Target(u) if isinstance(u, str) else Target(u.url, u.selector or None, u.render)
        for u in urls
    ]


NO_BROWSER_FOR_RENDER = (
    "This server has no browser to read pages with render browser: set TORALE_BROWSER_PATH "
    "(a Chromium to launch) or TORALE_BROWSER_URL (one to connect to)"
)
SCREENSHOT_NEEDS_BROWSER = (
    "Screenshots are taken of pages read with render browser: set render to browser (for the "
    "task, or for a url)"
)


def render_errors(
    *,
    render: str,
    screenshot: bool,
    targets: list[Target],
    policy: TaskPolicy,
    check_render: bool = True,
    check_targets: bool = True,
) -> list[dict[str, Any]]:
    """Reading with a browser needs a server with one; a screenshot needs a page read with it.
    `check_render`, `check_targets`: whether the task's render and its targets were sent (an
    update that leaves them alone is not refused for what they already say)."""
    errors = []
    if not policy.browser:
        if check_render and render == "browser":
            errors.append(
                field_error(["body", "render"], NO_BROWSER_FOR_RENDER, "browser_not_configured")
            )
        if check_targets:
            errors += [
                field_error(
                    ["body", "urls", i, "render"], NO_BROWSER_FOR_RENDER, "browser_not_configured"
                )
                for i, target in enumerate(targets)
                if target.render == "browser"
            ]
    if screenshot and not any((t.render or render) == "browser" for t in targets):
        errors.append(
            field_error(
                ["body", "screenshot"], SCREENSHOT_NEEDS_BROWSER, "screenshot_without_browser"
            )
        )
    return errors


def resolve_mode(*, mode: str | None, rules: Any, search_query: str) -> str:
    """The mode of a task that did not say (docs/api.md §4): `rules` when rules are given, else
    `model` when a search query is given (a model judges it: without a model configured that
    is a 422 at `mode`), else `change` (only urls: watch them for changes)."""
    if mode:
        return mode
    if rules:
        return "rules"
    return "model" if search_query else "change"


def mode_errors(
    *,
    mode: str,
    search_query: str,
    targets: list[Target],
    rules: Any,
    change: Any,
    config: dict[str, Any],
    policy: TaskPolicy,
    asked: bool,
) -> list[dict[str, Any]]:
    """What the mode needs: `model` a search query and a model; `change` and `rules` at least
    one URL (they read only their urls, and search nothing: config.search_provider does not
    apply to them); `rules` its rules. Rules, change filters and config.model belong to their
    own mode. `asked`: whether the mode was sent rather than defaulted."""
    errors = []
    if mode == "model":
        if not (policy.model_configured or config.get("model")):
            errors.append(field_error(["body", "mode"], NO_MODEL_FOR_MODE, "model_not_configured"))
        elif not search_query:
            errors.append(
                field_error(["body", "search_query"], "Field required in mode model", "missing")
            )
    else:
        if not targets and not asked:
            # Neither a query nor urls.
            message = "Field required: a search query, or urls to watch for changes"
            errors.append(field_error(["body", "search_query"], message, "missing"))
        elif not targets:
            message = f"Mode {mode} watches the task's urls: give at least one"
            errors.append(field_error(["body", "urls"], message, "urls_required"))
        if config.get("model"):
            errors.append(
                field_error(
                    ["body", "config", "model"],
                    f"Mode {mode} asks no model: config.model applies to mode model only",
                    "mode_mismatch",
                )
            )
    if mode == "rules" and not rules:
        errors.append(field_error(["body", "rules"], "Mode rules needs rules", "missing"))
    if mode != "rules" and rules:
        errors.append(
            field_error(["body", "rules"], "Rules apply to mode rules only", "mode_mismatch")
        )
    if mode != "change" and change:
        errors.append(
            field_error(
                ["body", "change"], "Change filters apply to mode change only", "mode_mismatch"
            )
        )
    return errors


def url_errors(urls: list[str], policy: TaskPolicy) -> list[dict[str, Any]]:
    found = (url_error(url, policy.pages, ["body", "urls", i]) for i, url in enumerate(urls))
    return [error for error in found if error]


def source_errors(
    urls: list[str], config: dict[str, Any], policy: TaskPolicy
) -> list[dict[str, Any]]:
    """The search provider asked for must be usable here; without one, urls are required."""
    provider = config.get("search_provider")
    unusable = dict(policy.unusable_search).get(provider or "")
    if unusable:
        return [field_error(["body", "config", "search_provider"], unusable, "provider_unusable")]
    if provider == "none" and not urls:
        message = 'With search_provider "none" nothing is searched: give the pages to read in urls'
        return [field_error(["body", "urls"], message, "urls_required")]
    return []


def model_errors(config: dict[str, Any], policy: TaskPolicy) -> list[dict[str, Any]]:
    """A model the task chooses must be one this server allows."""
    model = config.get("model")
    problem = model_problem(model, policy.allowed_models) if model else None
    if problem:
        return [field_error(["body", "config", "model"], problem, "model_not_allowed")]
    return []


def _resolve_state(
    current: TaskState | None, state: TaskState | None, is_active: bool | None
) -> TaskState | None:
    """The state asked for by `state` and/or `is_active` (None: no change asked)."""
    if state is not None and is_active is not None and is_active != (state == TaskState.ACTIVE):
        raise FieldValidationError.single(
            ["body", "is_active"], "is_active contradicts state", "value_error"
        )
    if state is not None:
        return state
    if is_active is True:
        return TaskState.ACTIVE
    if is_active is False:
        return TaskState.PAUSED if current in (None, TaskState.ACTIVE) else current
    return None


async def create_task(
    session: AsyncSession, *, user_id: uuid.UUID, data: TaskCreate, policy: TaskPolicy
) -> Task:
    task = build_task(user_id=user_id, data=data, policy=policy)
    session.add(task)
    await session.flush()
    return task


DEFAULT_NAME_CHARS = 80


def default_name(search_query: str, urls: list[str]) -> str:
    """A task's name when none is given: its query (shortened at a word), else its first page."""
    text = " ".join(search_query.split())
    if not text and urls:
        parts = urlsplit(urls[0])
        text = f"{parts.hostname or ''}{parts.path.rstrip('/')}"
    if len(text) > DEFAULT_NAME_CHARS:
        cut = text[: DEFAULT_NAME_CHARS - 1]
        text = (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,.;:-") + "…"
    return text or "New monitor"


def build_task(*, user_id: uuid.UUID, data: TaskCreate, policy: TaskPolicy) -> Task:
    """A new task, validated and complete but not yet added to a session."""
    notifications = stored_channels(data.notifications)
    targets = targets_of_input(data.urls)
    urls = [t.url for t in targets]
    config = data.config.model_dump(exclude_none=True)
    query = data.search_query or ""
    rules = data.rules.model_dump() if data.rules else None
    change = data.change.model_dump() if data.change else None
    mode = resolve_mode(mode=data.mode, rules=rules, search_query=query)
    errors = (
        _schedule_errors(data.schedule, policy)
        + url_errors(urls, policy)
        + mode_errors(
            mode=mode,
            search_query=query,
            targets=targets,
            rules=rules,
            change=change,
            config=config,
            policy=policy,
            asked=data.mode is not None,
        )
        + (source_errors(urls, config, policy) if mode == "model" else [])
        + model_errors(config, policy)
        + render_errors(
            render=data.render, screenshot=data.screenshot, targets=targets, policy=policy
        )
        + channel_errors(notifications, policy.notifications)
    )
    if errors:
        raise FieldValidationError(errors)
    asked = TaskState(data.state) if data.state else None
    state = _resolve_state(None, asked, data.is_active) or TaskState.ACTIVE
    now = datetime.now(UTC)
    task = Task(
        id=uuid.uuid4(),
        user_id=user_id,
        name=data.name or default_name(query, urls),
        search_query=query,
        condition_description=data.condition_description or query,
        urls=stored_targets(targets),
        mode=mode,
        rules=rules,
        change=change,
        render=data.render,
        screenshot=data.screenshot,
        schedule=data.schedule,
        timezone=data.timezone,
        notify_behavior=data.notify_behavior,
        notifications=notifications,
        config=data.config.model_dump(exclude_none=True),
        executor_type=data.executor_type,
        condition_met=False,
        context=data.context,
        created_at=now,
        updated_at=now,
    )
    transitions.start(task, state, now=now, run_immediately=data.run_immediately)
    return task


def _owned(user_id: uuid.UUID) -> Select[Task]:
    return select(Task).where(Task.user_id == user_id)


_COLUMNS = columns_of(Task)
_KEYS = tuple(c.key for c in _COLUMNS)
_SELECT_COLUMNS = select(*_COLUMNS)  # built once: each query refines a copy of it
_ONE_TASK = _SELECT_COLUMNS.where(
    Task.user_id == bindparam("user_id"), Task.id == bindparam("task_id")
)


def task_row(task: Task | Mapping[Any, Any]) -> dict[str, Any]:
    """A task as a row for responses: its attributes, and its URL targets as objects. `task`
    is a Task or a row of `_COLUMNS` (reads skip the ORM: a page of tasks as ORM objects cost
    more than the rest of its answer)."""
    row = {c.key: getattr(task, c.key) for c in _COLUMNS} if isinstance(task, Task) else dict(task)
    row["targets"] = url_targets(row["urls"])
    return row


def _filtered(
    statement: Select[Any], state: TaskState | Any | None, is_active: bool | None
) -> Select[Any]:
    if state is not None:
        statement = statement.where(Task.state == state)
    if is_active is True:
        statement = statement.where(Task.state == TaskState.ACTIVE)
    elif is_active is False:
        statement = statement.where(Task.state != TaskState.ACTIVE)
    return statement.order_by(Task.created_at.desc(), Task.id.desc())


@lru_cache(maxsize=8)
def _page_statement(by_state: bool, is_active: bool | None) -> Select[Any]:
    """A page of a user's tasks, newest first, with the total (`pagination.paginate_rows`'s
    window), its values bound at execution: user_id, state (when `by_state`), limit, offset."""
    statement = _filtered(
        _SELECT_COLUMNS.where(Task.user_id == bindparam("user_id")),
        bindparam("state") if by_state else None,
        is_active,
    )
    return (
        statement.add_columns(func.count().over().label("_total"))
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


async def list_tasks(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    page: PageParams,
    state: TaskState | None = None,
    is_active: bool | None = None,
    text: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Newest first, as rows (`task_row`); `text` matches name, query or condition
    (case-insensitive substring)."""
    if text is None:
        # The API's and the tasks page's query: a statement built once per filter, its cache
        # key computed once (building and keying a fresh one cost more than running it).
        statement = _page_statement(state is not None, is_active)
        values: dict[str, Any] = {"user_id": user_id, "limit": page.limit, "offset": page.offset}
        if state is not None:
            values["state"] = state
        connection = await session.connection()  # Core rows: no ORM result handling
        rows = (await connection.execute(statement, values)).all()
        if rows or page.offset == 0:
            total = int(rows[0][-1]) if rows else 0
            return [task_row(dict(zip(_KEYS, row, strict=False))) for row in rows], total
    statement = _SELECT_COLUMNS.where(Task.user_id == user_id)
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(
            Task.name.ilike(pattern, escape="\\")
            | Task.search_query.ilike(pattern, escape="\\")
            | Task.condition_description.ilike(pattern, escape="\\")
        )
    statement = _filtered(statement, state, is_active)
    # Core rows on the session's connection: the ORM's result handling (for rows that are
    # not entities) cost more than the query itself.
    rows, total = await paginate_rows(session, statement, page, core=True)
    return [task_row(dict(zip(_KEYS, row, strict=True))) for row in rows], total


async def get_task_row(
    session: AsyncSession, *, user_id: uuid.UUID, task_id: uuid.UUID
) -> dict[str, Any]:
    """`get_task` as a row (`task_row`), for reads."""
    connection = await session.connection()
    row = (await connection.execute(_ONE_TASK, {"user_id": user_id, "task_id": task_id})).first()
    if row is None:
        raise NotFoundError("Task not found")
    return task_row(row._mapping)


async def get_task(session: AsyncSession, *, user_id: uuid.UUID, task_id: uuid.UUID) -> Task:
    task = await session.scalar(_owned(user_id).where(Task.id == task_id))
    if task is None:
        raise NotFoundError("Task not found")
    return task


async def update_task(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    task_id: uuid.UUID,
    data: TaskUpdate,
    policy: TaskPolicy,
) -> Task:
    task = await get_task(session, user_id=user_id, task_id=task_id)
    sent = data.model_fields_set
    nulls = [f for f in _NOT_NULL if f in sent and getattr(data, f) is None]
    if nulls:
        raise FieldValidationError(
            [field_error(["body", f], "Field may not be null", "null_refused") for f in nulls]
        )

    errors: list[dict[str, Any]] = []
    if "schedule" in sent:
        errors += _schedule_errors(data.schedule or task.schedule, policy)
    targets = targets_of_input(data.urls or []) if "urls" in sent else targets_of(task.urls)
    if "urls" in sent:
        errors += url_errors([t.url for t in targets], policy)
    config = data.config.model_dump(exclude_none=True) if data.config else task.config
    query = (data.search_query or "") if "search_query" in sent else task.search_query
    rules = (data.rules.model_dump() if data.rules else None) if "rules" in sent else task.rules
    change = (
        (data.change.model_dump() if data.change else None) if "change" in sent else task.change
    )
    mode = data.mode or task.mode
    if {"urls", "config", "mode", "rules", "change", "search_query"} & sent:
        errors += mode_errors(
            mode=mode,
            search_query=query,
            targets=targets,
            rules=rules,
            change=change,
            config=config,
            policy=policy,
            asked=True,
        )
        if mode == "model":
            errors += source_errors([t.url for t in targets], config, policy)
    if "config" in sent and data.config is not None:
        errors += model_errors(data.config.model_dump(exclude_none=True), policy)
    render = data.render or task.render
    screenshot = task.screenshot if data.screenshot is None else data.screenshot
    if {"urls", "render", "screenshot"} & sent:
        errors += render_errors(
            render=render,
            screenshot=screenshot,
            targets=targets,
            policy=policy,
            check_render="render" in sent,
            check_targets="urls" in sent,
        )
    notifications = None
    if "notifications" in sent:
        channels: list[AnyChannel] = data.notifications or []
        notifications = restore_masked_secrets(stored_channels(channels), task.notifications)
        errors += channel_errors(notifications, policy.notifications)
    if errors:
        raise FieldValidationError(errors)

    target = _resolve_state(task.state, data.state, data.is_active)
    if target is not None:
        transitions.check_owner_transition(task.state, target)  # before anything changes

    # A condition that was defaulted to the query keeps following it.
    follows_query = task.condition_description == task.search_query
    if "search_query" in sent and "condition_description" not in sent and follows_query:
        task.condition_description = data.search_query or task.search_query
    for field in ("name", "search_query", "schedule", "timezone", "notify_behavior"):
        if field in sent:
            setattr(task, field, getattr(data, field))
    if "condition_description" in sent:
        task.condition_description = data.condition_description or task.search_query
    if "urls" in sent:
        if task.urls != stored_targets(targets):
            task.selector_misses = 0  # new targets: their misses are counted afresh
        task.urls = stored_targets(targets)
    task.mode, task.rules, task.change = mode, rules, change
    task.render, task.screenshot = render, screenshot
    if notifications is not None:
        task.notifications = notifications
    if "config" in sent and data.config is not None:
        task.config = data.config.model_dump(exclude_none=True)
    if "context" in sent:
        task.context = data.context

    now = datetime.now(UTC)
    moved = target is not None and transitions.change_state(task, target, now=now)
    if not moved and {"schedule", "timezone"} & sent:
        transitions.reschedule(task, now=now)
    if session.is_modified(task):
        task.updated_at = now
    await session.flush()
    return task


async def delete_task(session: AsyncSession, *, user_id: uuid.UUID, task_id: uuid.UUID) -> None:
    task = await get_task(session, user_id=user_id, task_id=task_id)
    await session.delete(task)
    await session.flush()
