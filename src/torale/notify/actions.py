"""Webhook actions whoever asks (the API route, a web page): the URL policy for a user's
webhook endpoint, and sending a signed test event now."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from torale.config import Settings
from torale.errors import FieldValidationError
from torale.net import OutboundPolicy
from torale.notify import service
from torale.notify.dispatcher import Dispatcher
from torale.notify.schemas import WebhookTestResult
from torale.notify.validation import url_error


def check_webhook_url(settings: Settings, url: str) -> None:
    """422 for a URL the outbound policy refuses (plain http unless allowed, private hosts)."""
    policy = OutboundPolicy.from_settings(settings, purpose="notifications")
    refused = url_error(url, policy, ["body", "url"])
    if refused:
        raise FieldValidationError([refused])


async def send_test(
    session: AsyncSession,
    *,
    settings: Settings,
    dispatcher: Dispatcher,
    user_id: uuid.UUID,
    url: str | None,
) -> WebhookTestResult:
    """Post a signed `webhook.test` event to `url` (default: the user's webhook URL) now, and
    report the receiver's answer. Nothing is queued or retried."""
    config = await service.webhook_config(session, user_id=user_id)
    target = url or config.url
    if not target:
        raise FieldValidationError.single(
            ["body", "url"], "Give a URL, or set one with PUT /api/v1/webhooks/config"
        )
    check_webhook_url(settings, target)
    message_id = f"test_{uuid.uuid4().hex}"
    event = {
        "id": message_id,
        "event_type": "webhook.test",
        "created_at": datetime.now(UTC).isoformat(),
        "api_version": "v1",
        "data": {"message": "This is a test event from Torale."},
    }
    started = time.perf_counter()
    result = await dispatcher.webhooks.post(
        target, message_id, event, secret=config.secret, headers={}
    )
    return WebhookTestResult(
        delivered=result.ok,
        url=target,
        webhook_id=message_id,
        status_code=result.status_code,
        error=result.error,
        duration_ms=int((time.perf_counter() - started) * 1000),
    )
