"""Every API operation the SDK offers, described once (used by the sync and async clients)."""

from __future__ import annotations

import uuid
from typing import Any

from torale.sdk.models import (
    ApiKey,
    ApiKeyCreated,
    DeliveryAttempt,
    Diff,
    Execution,
    FeedToken,
    FeedTokenCreated,
    Page,
    PreviewResult,
    SourceSnapshot,
    Task,
    TaskSuggestion,
    User,
    WebhookConfig,
    WebhookTestResult,
)
from torale.sdk.transport import Call, call, ignore_body

TASKS = "/api/v1/tasks"


def _id(value: uuid.UUID | str) -> str:
    return str(uuid.UUID(str(value)))  # a clear ValueError for a malformed id, before sending


def create_task(fields: dict[str, Any]) -> Call[Task]:
    return call("POST", TASKS, Task, json=fields)


def list_tasks(page: int, limit: int, state: str | None, is_active: bool | None) -> Call[Any]:
    params = {"page": page, "limit": limit, "state": state, "is_active": is_active}
    return call("GET", TASKS, Page[Task], params=params)


def get_task(task_id: uuid.UUID | str) -> Call[Task]:
    return call("GET", f"{TASKS}/{_id(task_id)}", Task)


def update_task(task_id: uuid.UUID | str, fields: dict[str, Any]) -> Call[Task]:
    return call("PATCH", f"{TASKS}/{_id(task_id)}", Task, json=fields)


def delete_task(task_id: uuid.UUID | str) -> Call[None]:
    return Call("DELETE", f"{TASKS}/{_id(task_id)}", ignore_body)


def execute_task(task_id: uuid.UUID | str, wait: bool) -> Call[Execution]:
    return call("POST", f"{TASKS}/{_id(task_id)}/execute", Execution, params={"wait": wait or None})


def task_executions(
    task_id: uuid.UUID | str, page: int, limit: int, *, notified: bool
) -> Call[Any]:
    kind = "notifications" if notified else "executions"
    return call(
        "GET",
        f"{TASKS}/{_id(task_id)}/{kind}",
        Page[Execution],
        params={"page": page, "limit": limit},
    )


def execution_sources(
    task_id: uuid.UUID | str, execution_id: uuid.UUID | str
) -> Call[list[SourceSnapshot]]:
    path = f"{TASKS}/{_id(task_id)}/executions/{_id(execution_id)}/sources"
    return call("GET", path, list[SourceSnapshot])


def task_diff(
    task_id: uuid.UUID | str,
    from_execution: uuid.UUID | str | None,
    to_execution: uuid.UUID | str | None,
) -> Call[Diff]:
    params = {
        "from": _id(from_execution) if from_execution else None,
        "to": _id(to_execution) if to_execution else None,
    }
    return call("GET", f"{TASKS}/{_id(task_id)}/diff", Diff, params=params)


def suggest_task(prompt: str) -> Call[TaskSuggestion]:
    return call("POST", f"{TASKS}/suggest", TaskSuggestion, json={"prompt": prompt})


def preview(fields: dict[str, Any]) -> Call[PreviewResult]:
    return call("POST", f"{TASKS}/preview", PreviewResult, json=fields)


def me() -> Call[User]:
    return call("GET", "/auth/me", User)


def list_api_keys(page: int, limit: int) -> Call[Any]:
    return call("GET", "/auth/api-keys", Page[ApiKey], params={"page": page, "limit": limit})


def create_api_key(name: str) -> Call[ApiKeyCreated]:
    return call("POST", "/auth/api-keys", ApiKeyCreated, json={"name": name})


def revoke_api_key(key_id: uuid.UUID | str) -> Call[None]:
    return Call("DELETE", f"/auth/api-keys/{_id(key_id)}", ignore_body)


def webhook_config() -> Call[WebhookConfig]:
    return call("GET", "/api/v1/webhooks/config", WebhookConfig)


def update_webhook_config(fields: dict[str, Any]) -> Call[WebhookConfig]:
    return call("PUT", "/api/v1/webhooks/config", WebhookConfig, json=fields)


def rotate_webhook_secret() -> Call[WebhookConfig]:
    return call("POST", "/api/v1/webhooks/config/rotate-secret", WebhookConfig)


def send_test_webhook(url: str | None) -> Call[WebhookTestResult]:
    body = {"url": url} if url else {}
    return call("POST", "/api/v1/webhooks/test", WebhookTestResult, json=body)


def deliveries(page: int, limit: int, task_id: uuid.UUID | str | None) -> Call[Any]:
    params = {"page": page, "limit": limit, "task_id": _id(task_id) if task_id else None}
    return call("GET", "/api/v1/webhooks/deliveries", Page[DeliveryAttempt], params=params)


def feed_token() -> Call[FeedToken]:
    return call("GET", "/api/v1/feeds/token", FeedToken)


def rotate_feed_token() -> Call[FeedTokenCreated]:
    return call("POST", "/api/v1/feeds/token", FeedTokenCreated)


def delete_feed_token() -> Call[FeedToken]:
    return call("DELETE", "/api/v1/feeds/token", FeedToken)
