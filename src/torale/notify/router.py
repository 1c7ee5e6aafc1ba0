"""Routes under /api/v1/webhooks: your webhook settings, a test send, delivery history."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from torale.auth.deps import CurrentUser
from torale.db.session import SessionDep
from torale.errors import FieldValidationError
from torale.net import OutboundPolicy
from torale.notify import service
from torale.notify.channels import mask_apprise_url
from torale.notify.schemas import (
    DeliveryAttemptRead,
    WebhookConfigRead,
    WebhookConfigUpdate,
    WebhookTest,
    WebhookTestResult,
)
from torale.notify.validation import url_error
from torale.pages import Page
from torale.pagination import PageDep
from torale.state import app_state

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


def _check(request: Request, url: str) -> None:
    policy = OutboundPolicy.from_settings(app_state(request).settings, purpose="notifications")
    refused = url_error(url, policy, ["body", "url"])
    if refused:
        raise FieldValidationError([refused])


@router.get(
    "/config",
    summary="Your webhook settings",
    description="The secret is made on first use; it signs every webhook of yours.",
)
async def get_config(user: CurrentUser, session: SessionDep) -> WebhookConfigRead:
    return WebhookConfigRead.model_validate(await service.webhook_config(session, user_id=user.id))


@router.put(
    "/config",
    summary="Change your webhook settings",
    description="Only the fields sent change. `url` must be https (unless the server allows "
    "http) and not point to a private address.",
)
async def put_config(
    request: Request, body: WebhookConfigUpdate, user: CurrentUser, session: SessionDep
) -> WebhookConfigRead:
    if body.url is not None:
        _check(request, body.url)
    config = await service.update_webhook_config(
        session,
        user_id=user.id,
        url=body.url,
        enabled=body.enabled,
        fields=body.model_fields_set,
    )
    return WebhookConfigRead.model_validate(config)


@router.post(
    "/config/rotate-secret",
    summary="Replace your webhook secret",
    description="Deliveries from now on are signed with the new secret, retries included.",
)
async def rotate_secret(user: CurrentUser, session: SessionDep) -> WebhookConfigRead:
    return WebhookConfigRead.model_validate(await service.rotate_secret(session, user_id=user.id))


@router.post(
    "/test",
    summary="Send a signed sample event",
    description="Posts a `webhook.test` event to the given URL (default: your webhook URL) now, "
    "and reports the receiver's answer. Nothing is queued or retried.",
)
async def test_webhook(
    request: Request, body: WebhookTest, user: CurrentUser, session: SessionDep
) -> WebhookTestResult:
    config = await service.webhook_config(session, user_id=user.id)
    url = body.url or config.url
    if not url:
        raise FieldValidationError.single(
            ["body", "url"], "Give a URL, or set one with PUT /api/v1/webhooks/config"
        )
    _check(request, url)
    message_id = f"test_{uuid.uuid4().hex}"
    event = {
        "id": message_id,
        "event_type": "webhook.test",
        "created_at": datetime.now(UTC).isoformat(),
        "api_version": "v1",
        "data": {"message": "This is a test event from Torale."},
    }
    started = time.perf_counter()
    result = await app_state(request).dispatcher.webhooks.post(
        url, message_id, event, secret=config.secret, headers={}
    )
    return WebhookTestResult(
        delivered=result.ok,
        url=url,
        webhook_id=message_id,
        status_code=result.status_code,
        error=result.error,
        duration_ms=int((time.perf_counter() - started) * 1000),
    )


@router.get(
    "/deliveries",
    summary="Delivery attempts",
    description="Every attempt to deliver a notification of yours (webhook, email, Apprise), "
    "newest first; `task_id` narrows to one task.",
)
async def deliveries(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    task_id: Annotated[uuid.UUID | None, Query(description="Only this task's.")] = None,
) -> Page[DeliveryAttemptRead]:
    rows, total = await service.list_attempts(session, user_id=user.id, page=page, task_id=task_id)
    items = []
    for attempt, delivery in rows:
        channel = delivery.channel
        target = channel.get("url") or channel.get("address") or ""
        if delivery.channel_type == "apprise":
            target = mask_apprise_url(target)
        items.append(
            DeliveryAttemptRead(
                id=attempt.id,
                delivery_id=delivery.id,
                task_id=delivery.task_id,
                execution_id=delivery.execution_id,
                channel_type=delivery.channel_type,
                target=target,
                attempted_at=attempt.attempted_at,
                success=attempt.success,
                status_code=attempt.status_code,
                error=attempt.error,
                duration_ms=attempt.duration_ms,
                delivery_status=delivery.status,
                attempt=delivery.attempts,
            )
        )
    return Page.of(items, total, page)
