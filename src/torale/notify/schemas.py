"""Webhook settings and delivery history (docs/api.md §7)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from torale.inputs import Text
from torale.statuses import DeliveryStatus


class WebhookConfigRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    url: str | None = Field(
        description="Receives every notification of your tasks (besides their own channels)."
    )
    secret: str = Field(description="Signs all your webhooks (Standard Webhooks, `whsec_…`).")
    enabled: bool


class WebhookConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Text | None = Field(default=None, max_length=2048, description="null removes it.")
    enabled: bool | None = None


class WebhookTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Text | None = Field(
        default=None, max_length=2048, description="Where to send; default: your webhook URL."
    )


class WebhookTestResult(BaseModel):
    delivered: bool
    url: str
    webhook_id: str
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryAttemptRead(BaseModel):
    id: uuid.UUID
    delivery_id: uuid.UUID
    task_id: uuid.UUID
    execution_id: uuid.UUID
    channel_type: Literal["webhook", "email", "apprise"]
    target: str = Field(description="The URL or address (Apprise URLs masked).")
    attempted_at: datetime
    success: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    delivery_status: DeliveryStatus
    attempt: int = Field(description="How many attempts the delivery has had so far.")
