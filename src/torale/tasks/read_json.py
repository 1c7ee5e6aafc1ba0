"""Task responses as JSON, written from stored rows without validating them again.

A task row was validated on its way in (`schemas.TaskCreate` / `TaskUpdate`), so reading it
back through `schemas.TaskRead` only re-checks what is already true, and a page of 20 tasks
spent most of its time there (docs/performance.md). Here a row becomes the value `TaskRead`
would dump (`model_dump(mode="json")`: same keys, same order, same values) by plain dictionary
work, and orjson writes it: the bytes are those of `model_dump_json()`
(tests/tasks/test_read_json.py compares them for varied tasks).

Only the common shapes are written directly: no rules or change filters, no notifications,
an empty config, URL targets with just `url`, `selector` and `render`. Any part that is
anything else goes through its own pydantic model (notifications, so that their secrets are
masked exactly as `TaskRead` masks them; rules; change filters; config; the last execution),
and a row with a value of an unexpected type goes through `TaskRead` whole — so an odd row
answers what it answered before (its 500 included), just not quickly.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, get_args

import orjson
from pydantic import TypeAdapter

from torale.executions.schemas import ExecutionRead
from torale.inputs import clean_json
from torale.notify.channels import NotificationChannel
from torale.statuses import TaskState
from torale.tasks.schemas import (
    ChangeFilters,
    NotifyBehavior,
    Render,
    Rules,
    TaskConfig,
    TaskMode,
    TaskRead,
)

_OPTIONS = orjson.OPT_UTC_Z  # pydantic writes UTC as "Z"; orjson would write "+00:00"
_MODES = frozenset(get_args(TaskMode))
_RENDERS = frozenset(get_args(Render))
_TARGET_RENDERS = frozenset((None, *_RENDERS))
_BEHAVIOURS = frozenset(get_args(NotifyBehavior))
_STATES = {state.value: state.value for state in TaskState} | {s: s.value for s in TaskState}
_EXECUTOR_TYPE = "llm_grounded_search"
_TARGET_KEYS = frozenset(("url", "selector", "render"))
_CHANNELS: TypeAdapter[list[Any]] = TypeAdapter(list[NotificationChannel])
_ACTIVE = TaskState.ACTIVE.value


class _UnusualRowError(Exception):
    """A row this module does not write itself: TaskRead does."""


def dumps(value: Any) -> bytes:
    """JSON as pydantic writes it (compact, UTF-8, UTC as "Z"). orjson.JSONEncodeError for
    what orjson cannot write (an integer beyond 64 bits): the caller falls back to pydantic."""
    return orjson.dumps(value, option=_OPTIONS)


def _str(value: Any) -> str:
    if type(value) is not str:
        raise _UnusualRowError
    return value


def _opt_str(value: Any) -> str | None:
    if value is not None and type(value) is not str:
        raise _UnusualRowError
    return value


def _time(value: Any) -> datetime:
    if type(value) is not datetime:
        raise _UnusualRowError
    return value


def _opt_time(value: Any) -> datetime | None:
    if value is not None and type(value) is not datetime:
        raise _UnusualRowError
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _UnusualRowError
    return value


def _one_of(value: Any, allowed: frozenset[Any]) -> Any:
    if type(value) is not str or value not in allowed:
        raise _UnusualRowError
    return value


def _target(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not value.keys() <= _TARGET_KEYS:
        raise _UnusualRowError
    url = _str(value.get("url"))
    selector = _opt_str(value.get("selector"))
    render = value.get("render")
    # Stored from validated input, so already stripped: anything else is left to pydantic.
    if url != url.strip() or not url or render not in _TARGET_RENDERS:
        raise _UnusualRowError
    if selector is not None and (selector != selector.strip() or not selector):
        raise _UnusualRowError
    return {"url": url, "selector": selector, "render": render}


def _uuid_or_none(value: Any) -> Any:
    if value is None:
        return None
    if type(value) is not uuid.UUID:
        raise _UnusualRowError
    return value


def _fast(row: Mapping[str, Any], last_execution: Mapping[str, Any] | None) -> dict[str, Any]:
    task_id, user_id = row["id"], row["user_id"]
    if type(task_id) is not uuid.UUID or type(user_id) is not uuid.UUID:
        raise _UnusualRowError
    targets = [_target(t) for t in row["targets"]]
    urls = row["urls"]
    if type(urls) is not list:
        raise _UnusualRowError
    plain = [_str(u["url"] if isinstance(u, dict) else u) for u in urls]
    rules, change = row["rules"], row["change"]
    notifications, config = row["notifications"], row["config"]
    if type(notifications) is not list or type(config) is not dict:
        raise _UnusualRowError
    state = _STATES.get(row["state"])
    if state is None:
        raise _UnusualRowError
    last_known = row["last_known_state"]
    if last_known is not None and type(last_known) is not dict:
        raise _UnusualRowError
    if row["executor_type"] != _EXECUTOR_TYPE:
        raise _UnusualRowError
    return {
        "id": task_id,
        "user_id": user_id,
        "name": _str(row["name"]),
        "search_query": _str(row["search_query"]),
        "condition_description": _str(row["condition_description"]),
        "urls": plain,
        "targets": targets,
        "mode": _one_of(row["mode"], _MODES),
        "rules": None if rules is None else Rules.model_validate(rules).model_dump(mode="json"),
        "change": (
            None if change is None else ChangeFilters.model_validate(change).model_dump(mode="json")
        ),
        "render": _one_of(row["render"], _RENDERS),
        "screenshot": _bool(row["screenshot"]),
        "schedule": _str(row["schedule"]),
        "timezone": _str(row["timezone"]),
        "notify_behavior": _one_of(row["notify_behavior"], _BEHAVIOURS),
        "notifications": (
            _CHANNELS.dump_python(_CHANNELS.validate_python(clean_json(notifications)), mode="json")
            if notifications
            else []
        ),
        "config": (
            TaskConfig.model_validate(clean_json(config)).model_dump(mode="json") if config else {}
        ),
        "executor_type": _EXECUTOR_TYPE,
        "state": state,
        "paused_reason": _opt_str(row["paused_reason"]),
        "condition_met": _bool(row["condition_met"]),
        "last_known_state": last_known,
        "last_notified_at": _opt_time(row["last_notified_at"]),
        "next_run": _opt_time(row["next_run"]),
        "last_execution_id": _uuid_or_none(row["last_execution_id"]),
        "last_execution": (
            None
            if last_execution is None
            else ExecutionRead.model_validate(last_execution).model_dump(mode="json")
        ),
        "context": row["context"],
        "created_at": _time(row["created_at"]),
        "updated_at": _time(row["updated_at"]),
        "state_changed_at": _time(row["state_changed_at"]),
        "is_active": state == _ACTIVE,
    }


def _validated(row: Mapping[str, Any], last_execution: Mapping[str, Any] | None) -> TaskRead:
    read = TaskRead.model_validate(row)
    if last_execution is not None:
        read.last_execution = ExecutionRead.model_validate(last_execution)
    return read


def task_value(
    row: Mapping[str, Any], last_execution: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What `TaskRead` of `row` (a `service.task_row`) with `last_execution` embedded dumps
    in JSON mode."""
    try:
        return _fast(row, last_execution)
    except _UnusualRowError:
        return _validated(row, last_execution).model_dump(mode="json")


def task_json(row: Mapping[str, Any], last_execution: Mapping[str, Any] | None = None) -> bytes:
    """`TaskRead`'s `model_dump_json()` of `row`, as bytes."""
    try:
        return dumps(task_value(row, last_execution))
    except orjson.JSONEncodeError:
        return _validated(row, last_execution).model_dump_json().encode()


def page_json(
    rows: Sequence[Mapping[str, Any]],
    last: Mapping[Any, Mapping[str, Any]],
    *,
    total: int,
    page: int,
    limit: int,
) -> bytes:
    """`Page[TaskRead]`'s `model_dump_json()`, as bytes; `last`: the rows' last executions by
    id."""

    def last_of(row: Mapping[str, Any]) -> Mapping[str, Any] | None:
        execution_id = row["last_execution_id"]
        return last.get(execution_id) if execution_id else None

    try:
        items = [task_value(row, last_of(row)) for row in rows]
        return dumps({"items": items, "total": total, "page": page, "limit": limit})
    except orjson.JSONEncodeError:
        from torale.pages import Page

        reads = [_validated(row, last_of(row)) for row in rows]
        listing = Page[TaskRead](items=reads, total=total, page=page, limit=limit)
        return listing.model_dump_json().encode()
