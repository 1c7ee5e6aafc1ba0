"""What a sender is given and what it answers, shared by the webhook, email and Apprise senders."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A claimed delivery, as the dispatcher hands it to a sender."""

    id: uuid.UUID
    user_id: uuid.UUID
    task_id: uuid.UUID
    execution_id: uuid.UUID
    channel_index: int
    channel_type: str
    channel: dict[str, Any]
    payload: dict[str, Any]
    attempt: int  # 1 for the first try
    lease_until: datetime  # identifies this claim: a takeover sets another


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False  # retrying cannot help
    disable_channel: bool = False  # the receiver answered 410 Gone


def message_text(payload: dict[str, Any]) -> tuple[str, str]:
    """(title, body) of the human-readable notification in an event."""
    task = payload["data"]["task"]
    message = payload["data"]["execution"].get("notification") or payload["data"]["result"].get(
        "answer", ""
    )
    title = " ".join(f"Torale: {task['name']}".split())  # headers are one line
    return title, str(message)
