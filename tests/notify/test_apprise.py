"""Apprise deliveries to a local `json://` endpoint, and the outbound policy in front of them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from tests.fakes import WebhookReceiver
from tests.fixtures.notify import (
    attempts_api,
    attempts_of,
    notifying_task,
    run_notifying,
    settled,
)
from tests.fixtures.users import ApiUser
from torale.db.models import Task


@pytest.fixture
def run_scheduler() -> bool:
    return True


@pytest.fixture
def forbidden() -> Iterator[WebhookReceiver]:
    """An endpoint on 127.0.0.2: loopback, outside the allowed 127.0.0.1/32."""
    with WebhookReceiver(host="127.0.0.2") as fake:
        yield fake


def apprise(url: str) -> dict[str, Any]:
    return {"type": "apprise", "url": url}


async def test_apprise_delivers_to_a_json_endpoint(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    target = f"json://127.0.0.1:{receiver.port}/notify"
    task = await notifying_task(client, alice, [apprise(target)], name="iPhone watch")
    assert task["notifications"] == [{"type": "apprise", "url": "json://********"}]
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    assert delivery.channel["url"] == target  # kept in full for sending
    (done,) = (await settled(app, [delivery.id])).values()
    assert (done.status, done.attempts) == ("delivered", 1)

    (got,) = await receiver.wait_for(1)
    assert got.path == "/notify"
    body = got.event
    assert body["title"] == "Torale: iPhone watch"
    assert body["message"].startswith("iPhone watch: Apple will release the iPhone 18")
    assert newsroom in body["message"]
    (item,) = (await attempts_api(client, alice))["items"]
    assert (item["channel_type"], item["target"], item["success"]) == (
        "apprise",
        "json://********",
        True,
    )


async def test_apprise_to_a_forbidden_address_is_refused(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    forbidden: WebhookReceiver,
    newsroom: str,
) -> None:
    target = apprise(f"json://127.0.0.2:{forbidden.port}/internal")
    # Refused when saved, as far as the URL tells...
    refused = await client.post(
        "/api/v1/tasks",
        json={"search_query": "q", "notifications": [target]},
        headers=alice.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "notifications", 0, "url"]
    # ...and when sent, for a channel saved before the policy was narrowed.
    task = await notifying_task(
        client, alice, [apprise(f"json://127.0.0.1:{forbidden.port}/internal")]
    )
    async with app.state.torale.sessions() as session:
        await session.execute(
            update(Task).where(Task.id == uuid.UUID(task["id"])).values(notifications=[target])
        )
        await session.commit()
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    (done,) = (await settled(app, [delivery.id])).values()
    assert (done.status, done.attempts) == ("failed", 1)  # final: retrying cannot help
    (attempt,) = await attempts_of(app, delivery.id)
    assert attempt.success is False
    assert attempt.error is not None
    assert attempt.error.startswith("refused by the outbound policy")
    assert forbidden.requests == []


async def test_apprise_does_not_follow_a_redirect_to_a_forbidden_address(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    forbidden: WebhookReceiver,
    newsroom: str,
) -> None:
    """An allowed host that redirects must not become a way to reach a forbidden one (the
    webhook sender follows no redirects; Apprise's own HTTP client must not either)."""
    receiver.redirect_to(forbidden.url_for("/internal"), status=307)
    task = await notifying_task(client, alice, [apprise(f"json://127.0.0.1:{receiver.port}/x")])
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    await settled(app, [delivery.id])
    assert len(receiver.requests) >= 1
    assert forbidden.requests == []
