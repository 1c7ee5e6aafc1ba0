"""Every API operation the SDK offers, described once (used by the sync and async clients)."""

from __future__ import annotations

import uuid
from typing import Any

from torale.auth.schemas import ApiKeyCreated, ApiKeyRead, RevokedResponse, UserRead
from torale.executions.preview import PreviewResponse
from torale.executions.schemas import ExecutionRead
from torale.notify.schemas import (
    DeliveryAttemptRead,
    WebhookConfigRead,
    WebhookTestResult,
)
from torale.pages import Page
from torale.sdk.transport import Call, call, no_content
from torale.tasks.schemas import TaskRead

TASKS = "/api/v1/tasks"


def _id(value: uuid.UUID | str) -> str:
    return str(uuid.UUID(str(value)))  # a clear ValueError for a malformed id, before sending


def create_task(fields: dict[str, Any]) -> Call[TaskRead]:
    return call("POST", TASKS, TaskRead, json=fields)


def list_tasks(page: int, limit: int, state: str | None, is_active: bool | None) -> Call[Any]:
    params = {"page": page, "limit": limit, "state": state, "is_active": is_active}
    return call("GET", TASKS, Page[TaskRead], params=params)


def get_task(task_id: uuid.UUID | str) -> Call[TaskRead]:
    return call("GET", f"{TASKS}/{_id(task_id)}", TaskRead)


def update_task(task_id: uuid.UUID | str, fields: dict[str, Any]) -> Call[TaskRead]:
    return call("PATCH", f"{TASKS}/{_id(task_id)}", TaskRead, json=fields)


def delete_task(task_id: uuid.UUID | str) -> Call[None]:
    return Call("DELETE", f"{TASKS}/{_id(task_id)}", no_content)


def execute_task(task_id: uuid.UUID | str, wait: bool) -> Call[ExecutionRead]:
    return call(
        "POST", f"{TASKS}/{_id(task_id)}/execute", ExecutionRead, params={"wait": wait or None}
    )


def task_executions(
    task_id: uuid.UUID | str, page: int, limit: int, *, notified: bool
) -> Call[Any]:
    kind = "notifications" if notified else "executions"
    return call(
        "GET",
        f"{TASKS}/{_id(task_id)}/{kind}",
        Page[ExecutionRead],
        params={"page": page, "limit": limit},
    )


def preview(fields: dict[str, Any]) -> Call[PreviewResponse]:
    return call("POST", f"{TASKS}/preview", PreviewResponse, json=fields)


def me() -> Call[UserRead]:
    return call("GET", "/auth/me", UserRead)


def list_api_keys(page: int, limit: int) -> Call[Any]:
    return call("GET", "/auth/api-keys", Page[ApiKeyRead], params={"page": page, "limit": limit})


def create_api_key(name: str) -> Call[ApiKeyCreated]:
    return call("POST", "/auth/api-keys", ApiKeyCreated, json={"name": name})


def revoke_api_key(key_id: uuid.UUID | str) -> Call[RevokedResponse]:
    return call("DELETE", f"/auth/api-keys/{_id(key_id)}", RevokedResponse)


def webhook_config() -> Call[WebhookConfigRead]:
    return call("GET", "/api/v1/webhooks/config", WebhookConfigRead)


def update_webhook_config(fields: dict[str, Any]) -> Call[WebhookConfigRead]:
    return call("PUT", "/api/v1/webhooks/config", WebhookConfigRead, json=fields)


def rotate_webhook_secret() -> Call[WebhookConfigRead]:
    return call("POST", "/api/v1/webhooks/config/rotate-secret", WebhookConfigRead)


def send_test_webhook(url: str | None) -> Call[WebhookTestResult]:
    body = {"url": url} if url else {}
    return call("POST", "/api/v1/webhooks/test", WebhookTestResult, json=body)


def deliveries(page: int, limit: int, task_id: uuid.UUID | str | None) -> Call[Any]:
    params = {"page": page, "limit": limit, "task_id": _id(task_id) if task_id else None}
    return call("GET", "/api/v1/webhooks/deliveries", Page[DeliveryAttemptRead], params=params)
