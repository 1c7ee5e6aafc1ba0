"""The outbox: notifications are rows written in the run's transaction, sent later.

A run that notifies queues one `Delivery` per channel of its task, with the event of docs/api.md §7
as it stood at that moment; the unique (execution, channel) key means a run can never queue a
channel twice. Sending them (webhook, email, Apprise), with retries, is the dispatcher's job.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import Delivery, Execution, Task, WebhookConfig
from torale.statuses import DeliveryStatus

EVENT_TYPE = "task.condition_met"
# A task's selector matched nothing in TORALE_SELECTOR_MISSES_TO_NOTIFY runs in a row.
SELECTOR_MISSED = "task.selector_missed"
API_VERSION = "v1"
_DIFF_HEADING = "Diff:"


def notification_message(
    *,
    task_name: str,
    answer: str,
    change_summary: str | None,
    sources: list[dict[str, Any]],
    diff: str | None = None,
) -> str:
    """The human-readable message of a notification (also kept on the execution); `diff`, the
    watched text's diff (trimmed), goes at the end."""
    lines = [f"{task_name}: {answer}"]
    if change_summary:
        lines += ["", f"What changed: {change_summary}"]
    if sources:
        lines += ["", "Sources:"]
        lines += [f"- {s['title'] or s['url']} ({s['url']})" for s in sources]
    if diff:
        lines += ["", _DIFF_HEADING, diff]
    return "\n".join(lines)


def selector_missed_message(*, task_name: str, missed: list[str], runs: int) -> str:
    """What the owner is told when a task's selectors stopped matching (`missed`: labels)."""
    lines = [
        f"{task_name}: the watched part of a page could not be found in the last {runs} runs "
        "(the selector matches nothing; the page may have been redesigned):"
    ]
    lines += [f"- {label}" for label in missed]
    lines += [
        "",
        "The task keeps running and fails until it matches again; update its selector to watch "
        "the page again. You will not be told again until it has matched.",
    ]
    return "\n".join(lines)


def diff_of_notification(
    message: str, *, answer: str, change_summary: str | None, sources: list[dict[str, Any]]
) -> str | None:
    """The diff a notification message carries (what `notification_message` put at its end),
    given the rest of what it was made from; None when it carries none. The message is
    `<name>: <tail>[\n\nDiff:\n<diff>]`, where only the task's name (which may have changed
    since) is unknown: the diff is what follows the last `<tail>\n\nDiff:\n` that comes after
    a `: `. A diff's lines are never empty (context lines start with a space), so that marker
    cannot appear inside the diff itself; only a task name made to look like a message could
    mislead it, in its owner's own feed."""
    tail = notification_message(
        task_name="", answer=answer, change_summary=change_summary, sources=sources
    ).removeprefix(": ")
    marker = f"{tail}\n\n{_DIFF_HEADING}\n"
    at = message.rfind(marker)
    if at < 0 or not message[:at].endswith(": "):
        return None
    return message[at + len(marker) :] or None


def event(
    *,
    delivery_id: uuid.UUID,
    task: Task,
    execution: Execution,
    now: datetime,
    diff: str | None = None,
    event_type: str = EVENT_TYPE,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event a channel receives (docs/api.md §7); `id` is the delivery id, kept on retries.
    `data.diff` is the watched text's unified diff from the previous run (trimmed), or null;
    `extra` adds event-specific fields to `data` (a selector miss: `missed`, `runs`)."""
    result = dict(execution.result or {})
    result["grounding_sources"] = execution.grounding_sources
    result["change_summary"] = execution.change_summary
    return {
        "id": str(delivery_id),
        "event_type": event_type,
        "created_at": now.isoformat(),
        "api_version": API_VERSION,
        "data": {
            "task": {
                "id": str(task.id),
                "name": task.name,
                "search_query": task.search_query,
                "condition_description": task.condition_description,
                "notify_behavior": task.notify_behavior,
            },
            "execution": {
                "id": str(execution.id),
                "trigger": execution.trigger,
                "started_at": execution.started_at.isoformat(),
                "completed_at": execution.completed_at.isoformat()
                if execution.completed_at
                else None,
                "notification": execution.notification,
            },
            "result": result,
            "diff": diff,
            "context": task.context,
            **(extra or {}),
        },
    }


ACCOUNT_WEBHOOK_INDEX = -1  # the channel index of the user's own webhook (webhook settings)


async def channels_of(session: AsyncSession, task: Task) -> list[tuple[int, dict[str, Any]]]:
    """(index, channel) of every channel a notification of `task` goes to now: the task's
    enabled channels, and the user's webhook from their settings if it is on and not a
    channel of the task already."""
    chosen = [
        (index, channel)
        for index, channel in enumerate(task.notifications)
        if channel.get("enabled", True)
    ]
    config = await session.get(WebhookConfig, task.user_id)
    task_webhooks = {c.get("url") for _, c in chosen if c["type"] == "webhook"}
    if config is not None and config.enabled and config.url and config.url not in task_webhooks:
        chosen.append((ACCOUNT_WEBHOOK_INDEX, {"type": "webhook", "url": config.url}))
    return chosen


async def queue_notifications(
    session: AsyncSession,
    *,
    task: Task,
    execution: Execution,
    now: datetime,
    diff: str | None = None,
    event_type: str = EVENT_TYPE,
    extra: dict[str, Any] | None = None,
) -> list[Delivery]:
    """A pending delivery per channel, added to the session (the run's transaction)."""
    deliveries = []
    for index, channel in await channels_of(session, task):
        delivery_id = uuid.uuid4()
        delivery = Delivery(
            id=delivery_id,
            execution_id=execution.id,
            task_id=task.id,
            user_id=task.user_id,
            channel_index=index,
            channel_type=channel["type"],
            channel=channel,
            payload=event(
                delivery_id=delivery_id,
                task=task,
                execution=execution,
                now=now,
                diff=diff,
                event_type=event_type,
                extra=extra,
            ),
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(delivery)
        deliveries.append(delivery)
    return deliveries
