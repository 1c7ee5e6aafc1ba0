"""Webhook settings and delivery history: the rules and queries. Scoped to the owner."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import Delivery, DeliveryAttempt, WebhookConfig
from torale.db.statements import insert_unless_conflict
from torale.notify.webhook import new_secret
from torale.pagination import PageParams, paginate_rows


async def webhook_config(session: AsyncSession, *, user_id: uuid.UUID) -> WebhookConfig:
    """The user's webhook settings; made (with a new secret) on first use, race-safely."""
    config = await session.get(WebhookConfig, user_id)
    if config is None:
        now = datetime.now(UTC)
        await insert_unless_conflict(
            session,
            WebhookConfig,
            {
                "user_id": user_id,
                "url": None,
                "secret": new_secret(),
                "enabled": True,
                "created_at": now,
                "updated_at": now,
            },
        )
        config = await session.get(WebhookConfig, user_id, populate_existing=True)
        assert config is not None
    return config


async def update_webhook_config(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    url: str | None,
    enabled: bool | None,
    fields: set[str],
) -> WebhookConfig:
    config = await webhook_config(session, user_id=user_id)
    if "url" in fields:
        config.url = url
    if "enabled" in fields and enabled is not None:
        config.enabled = enabled
    await session.flush()
    return config


async def rotate_secret(session: AsyncSession, *, user_id: uuid.UUID) -> WebhookConfig:
    config = await webhook_config(session, user_id=user_id)
    config.secret = new_secret()
    await session.flush()
    return config


async def list_attempts(
    session: AsyncSession, *, user_id: uuid.UUID, page: PageParams, task_id: uuid.UUID | None
) -> tuple[list[tuple[DeliveryAttempt, Delivery]], int]:
    statement = (
        select(DeliveryAttempt, Delivery)
        .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
        .where(DeliveryAttempt.user_id == user_id)
    )
    if task_id is not None:
        statement = statement.where(DeliveryAttempt.task_id == task_id)
    statement = statement.order_by(DeliveryAttempt.attempted_at.desc(), DeliveryAttempt.id.desc())
    rows, total = await paginate_rows(session, statement, page)
    return [(attempt, delivery) for attempt, delivery in rows], total
