"""Routes under /api/v1/webhooks: your webhook settings, a test send, delivery history."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from torale.auth.deps import CurrentUser
from torale.db.session import SessionDep
from torale.notify import actions, service
from torale.notify.channels import mask_apprise_url
from torale.notify.schemas import (
    DeliveryAttemptRead,
    WebhookConfigRead,
    WebhookConfigUpdate,
    WebhookTest,
    WebhookTestResult,
)
from torale.pages import Page
from torale.pagination import PageDep
from torale.state import app_state

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


def _check(request: Request, url: str) -> None:
    actions.check_webhook_url(app_state(request).settings, url)


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
    state = app_state(request)
    return await actions.send_test(
        session,
        settings=state.settings,
        dispatcher=state.dispatcher,
        user_id=user.id,
        url=body.url,
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
