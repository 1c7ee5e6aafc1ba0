"""SSRF probes through every outbound path: page fetches (task urls, search hits, preview),
webhook deliveries (task channels and the account's webhook), POST /api/v1/webhooks/test, and
Apprise `json://` URLs.

The settings allow exactly 127.0.0.1 (TORALE_ALLOWED_NETWORKS=127.0.0.1/32), where the fakes
listen. The probes aim at loopback outside it (127.0.0.2, where a web server and a receiver
listen and must receive nothing; [::1]; 127.0.0.2 wrapped in IPv6 or written as a number),
10.x, the cloud metadata address, and at redirects from an allowed server to all of those.
Every probe must be refused when the URL is saved (as far as the URL tells), refused when it is
sent (for URLs saved before the policy was narrowed, and for names that resolve inside), and
never reached: `ConnectSpy` records every connection attempt to an address other than
127.0.0.1 (and keeps non-loopback ones off the network), and it must record none.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from tests.fakes import FakeOpenAI, FakeSearxng, FakeWeb, WebhookReceiver, sequence
from tests.fixtures.users import ApiUser
from tests.hardening.netguard import ConnectSpy
from torale.db.models import Delivery, DeliveryAttempt, Task, WebhookConfig

NOT_MET = {
    "answer": "No release date has been announced yet.",
    "condition_met": False,
    "current_state": {"release_date": None},
    "reasoning": "The page says the date is to be announced.",
    "confidence": 0.8,
    "sources": [],
}
MET = {**NOT_MET, "condition_met": True, "answer": "It is September 9."}
PUBLIC_TEXT = "Nothing about the next release has been announced so far this year."


@pytest.fixture
def run_scheduler() -> bool:
    """The dispatcher sends deliveries in these tests."""
    return True


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    return {"max_search_results": 10}  # every probe among the search hits is tried


def inside(port: int, scheme: str = "http") -> list[str]:
    """URLs of places the outbound policy must keep Torale out of (`port`: the servers on
    127.0.0.2, so that a request that got through would be seen)."""
    return [
        f"{scheme}://127.0.0.2:{port}/secret",
        f"{scheme}://10.0.0.1:{port}/secret",
        f"{scheme}://169.254.169.254/latest/meta-data/",
        f"{scheme}://[::1]:{port}/secret",
        f"{scheme}://[::ffff:127.0.0.2]:{port}/secret",
    ]


def resolving_inside(port: int, scheme: str = "http") -> list[str]:
    """Host names that only resolve to a forbidden address (checked after DNS)."""
    return [f"{scheme}://2130706434:{port}/secret"]  # 127.0.0.2 as a number: a name to urlsplit


def assert_never_reached(
    spy: ConnectSpy, *servers: WebhookReceiver | FakeWeb, allowed: tuple[str, ...] = ()
) -> None:
    assert [a for a in spy.attempts if a not in allowed] == [], "a forbidden address was reached"
    for server in servers:
        assert server.requests == [], f"{server!r} received requests"


async def new_task(client: httpx.AsyncClient, user: ApiUser, **body: Any) -> dict[str, Any]:
    body.setdefault("search_query", "When is the next iPhone release?")
    response = await client.post("/api/v1/tasks", json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def run_now(client: httpx.AsyncClient, user: ApiUser, task_id: str) -> dict[str, Any]:
    response = await client.post(f"/api/v1/tasks/{task_id}/execute?wait=true", headers=user.headers)
    assert response.status_code == 200, response.text
    execution: dict[str, Any] = response.json()
    assert execution["status"] in ("success", "failed"), execution
    return execution


async def store(app: FastAPI, task_id: str, **values: Any) -> None:
    """Write task columns directly: channels and urls saved before the policy was narrowed."""
    async with app.state.torale.sessions() as session:
        await session.execute(update(Task).where(Task.id == uuid.UUID(task_id)).values(**values))
        await session.commit()


async def settled(app: FastAPI, execution_id: str, count: int) -> list[Delivery]:
    for _ in range(500):
        async with app.state.torale.sessions() as session:
            rows = list(
                await session.scalars(
                    select(Delivery).where(Delivery.execution_id == uuid.UUID(execution_id))
                )
            )
        if len(rows) == count and all(d.status in ("delivered", "failed") for d in rows):
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} deliveries of {execution_id} did not settle: {rows}")


async def attempts(app: FastAPI, delivery_ids: list[uuid.UUID]) -> list[DeliveryAttempt]:
    async with app.state.torale.sessions() as session:
        return list(
            await session.scalars(
                select(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(delivery_ids))
            )
        )


@pytest.fixture
def public_page(fake_web: FakeWeb, fake_model: FakeOpenAI) -> str:
    """An allowed page (on 127.0.0.1) that every run can read."""
    fake_web.set_page(
        "/public", f"<html><body><article><p>{PUBLIC_TEXT}</p></article></body></html>"
    )
    fake_model.script = sequence(MET)
    return fake_web.url + "/public"


# --- page fetches --------------------------------------------------------------------------


async def test_page_urls_inside_are_refused_when_saved(
    client: httpx.AsyncClient, alice: ApiUser, forbidden_web: FakeWeb, connect_spy: ConnectSpy
) -> None:
    task = await new_task(client, alice)
    for url in inside(forbidden_web.port):
        created = await client.post(
            "/api/v1/tasks", json={"search_query": "q", "urls": [url]}, headers=alice.headers
        )
        assert created.status_code == 422, (url, created.text)
        assert created.json()["detail"][0]["loc"] == ["body", "urls", 0]
        changed = await client.patch(
            f"/api/v1/tasks/{task['id']}", json={"urls": [url]}, headers=alice.headers
        )
        assert changed.status_code == 422, (url, changed.text)
        preview = await client.post(
            "/api/v1/tasks/preview",
            json={"search_query": "q", "urls": [url]},
            headers=alice.headers,
        )
        assert preview.status_code == 422, (url, preview.text)
    assert_never_reached(connect_spy, forbidden_web)


async def test_saved_page_urls_inside_are_never_fetched(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_search: FakeSearxng,
    forbidden_web: FakeWeb,
    public_page: str,
    connect_spy: ConnectSpy,
) -> None:
    port = forbidden_web.port
    task = await new_task(client, alice, urls=[public_page])
    targets = inside(port) + resolving_inside(port)
    await store(app, task["id"], urls=[*targets, public_page])
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success", execution
    assert execution["usage"]["pages_fetched"] == 1
    assert execution["usage"]["pages_failed"] == len(targets)
    assert [s["url"] for s in execution["grounding_sources"]] == [public_page]
    assert_never_reached(connect_spy, forbidden_web)


async def test_search_hits_inside_are_never_fetched_by_runs_or_previews(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_search: FakeSearxng,
    fake_model: FakeOpenAI,
    forbidden_web: FakeWeb,
    public_page: str,
    connect_spy: ConnectSpy,
) -> None:
    port = forbidden_web.port
    targets = inside(port) + resolving_inside(port)
    fake_search.set_results(
        None, [(url, "Internal", "") for url in targets] + [(public_page, "Public", "")]
    )
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success", execution
    assert execution["usage"]["pages_failed"] == len(targets)
    preview = await client.post(
        "/api/v1/tasks/preview", json={"search_query": "q"}, headers=alice.headers
    )
    assert preview.status_code == 200, preview.text
    assert [s["url"] for s in preview.json()["grounding_sources"]] == [public_page]
    assert fake_model.last is not None
    assert "internal admin data" not in fake_model.last.prompt_text
    assert_never_reached(connect_spy, forbidden_web)


async def test_page_redirects_inside_are_never_followed(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_search: FakeSearxng,
    forbidden_web: FakeWeb,
    public_page: str,
    connect_spy: ConnectSpy,
) -> None:
    port = forbidden_web.port
    targets = inside(port) + resolving_inside(port)
    hits = []
    for index, target in enumerate(targets):
        fake_web.redirect(f"/jump{index}", target, status=302 if index % 2 else 307)
        hits.append((fake_web.url + f"/jump{index}", "Jump", ""))
    fake_search.set_results(None, [*hits, (public_page, "Public", "")])
    task = await new_task(client, alice, urls=[fake_web.url + "/jump0"])  # a task url too
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success", execution
    assert execution["usage"]["pages_failed"] == len(targets)
    for index in range(len(targets)):
        assert fake_web.count(f"/jump{index}") == 1  # the first hop was allowed...
    assert_never_reached(connect_spy, forbidden_web)  # ...the second never happened


# --- webhooks ----------------------------------------------------------------------------------


async def test_webhook_urls_inside_are_refused_when_saved_or_tested(
    client: httpx.AsyncClient,
    alice: ApiUser,
    forbidden: WebhookReceiver,
    connect_spy: ConnectSpy,
) -> None:
    for url in inside(forbidden.port):
        channel = {"type": "webhook", "url": url}
        created = await client.post(
            "/api/v1/tasks",
            json={"search_query": "q", "notifications": [channel]},
            headers=alice.headers,
        )
        assert created.status_code == 422, (url, created.text)
        assert created.json()["detail"][0]["loc"] == ["body", "notifications", 0, "url"]
        config = await client.put(
            "/api/v1/webhooks/config", json={"url": url}, headers=alice.headers
        )
        assert config.status_code == 422, (url, config.text)
        tested = await client.post(
            "/api/v1/webhooks/test", json={"url": url}, headers=alice.headers
        )
        assert tested.status_code == 422, (url, tested.text)
    assert_never_reached(connect_spy, forbidden)


async def test_saved_webhooks_inside_are_never_called(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_search: FakeSearxng,
    forbidden: WebhookReceiver,
    public_page: str,
    connect_spy: ConnectSpy,
) -> None:
    """Channels and the account's webhook URL saved before the policy was narrowed (or names
    that resolve inside) are refused when sent, for good: retrying cannot help."""
    fake_search.set_results(None, [(public_page, "Public", "")])
    port = forbidden.port
    targets = inside(port) + resolving_inside(port)
    task = await new_task(client, alice, notify_behavior="always")
    await store(app, task["id"], notifications=[{"type": "webhook", "url": url} for url in targets])
    await client.get("/api/v1/webhooks/config", headers=alice.headers)  # made on first use
    async with app.state.torale.sessions() as session:
        await session.execute(
            update(WebhookConfig)
            .where(WebhookConfig.user_id == alice.id)
            .values(url=f"http://127.0.0.2:{port}/account")
        )
        await session.commit()

    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success", execution
    assert execution["notification"]
    deliveries = await settled(app, execution["id"], len(targets) + 1)
    assert {d.status for d in deliveries} == {"failed"}
    tries = await attempts(app, [d.id for d in deliveries])
    assert len(tries) == len(deliveries)  # one attempt each: the refusal is final
    for attempt in tries:
        assert attempt.error is not None
        assert attempt.error.startswith("refused by the outbound policy"), attempt.error

    # The test route re-checks the saved account URL as well.
    tested = await client.post("/api/v1/webhooks/test", json={}, headers=alice.headers)
    assert tested.status_code == 422, tested.text
    assert_never_reached(connect_spy, forbidden)


async def test_webhook_redirects_inside_are_never_followed(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_search: FakeSearxng,
    receiver: WebhookReceiver,
    forbidden: WebhookReceiver,
    public_page: str,
    connect_spy: ConnectSpy,
) -> None:
    fake_search.set_results(None, [(public_page, "Public", "")])
    targets = inside(forbidden.port) + resolving_inside(forbidden.port)
    task = await new_task(
        client,
        alice,
        notify_behavior="always",
        notifications=[{"type": "webhook", "url": receiver.url_for("/hook")}],
    )
    for target in targets:
        receiver.redirect_to(target, status=307)
        tested = await client.post(
            "/api/v1/webhooks/test", json={"url": receiver.url_for("/t")}, headers=alice.headers
        )
        assert tested.status_code == 200, tested.text
        assert tested.json()["delivered"] is False
        assert tested.json()["status_code"] == 307
        execution = await run_now(client, alice, task["id"])
        (delivery,) = await settled(app, execution["id"], 1)
        assert delivery.status != "delivered"
    assert len(receiver.requests) >= 2 * len(targets)  # the first hop was made...
    assert_never_reached(connect_spy, forbidden)  # ...never the second


# --- Apprise -------------------------------------------------------------------------------------


def apprise(url: str) -> dict[str, str]:
    return {"type": "apprise", "url": url}


async def test_apprise_urls_inside_are_refused_when_saved(
    client: httpx.AsyncClient, alice: ApiUser, forbidden: WebhookReceiver, connect_spy: ConnectSpy
) -> None:
    for url in inside(forbidden.port, "json") + inside(forbidden.port, "jsons"):
        created = await client.post(
            "/api/v1/tasks",
            json={"search_query": "q", "notifications": [apprise(url)]},
            headers=alice.headers,
        )
        assert created.status_code == 422, (url, created.text)
        assert created.json()["detail"][0]["loc"] == ["body", "notifications", 0, "url"]
    assert_never_reached(connect_spy, forbidden)


async def test_saved_apprise_urls_inside_are_never_called(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_search: FakeSearxng,
    forbidden: WebhookReceiver,
    public_page: str,
    connect_spy: ConnectSpy,
) -> None:
    fake_search.set_results(None, [(public_page, "Public", "")])
    port = forbidden.port
    targets = inside(port, "json") + resolving_inside(port, "json")
    task = await new_task(client, alice, notify_behavior="always")
    await store(app, task["id"], notifications=[apprise(url) for url in targets])
    execution = await run_now(client, alice, task["id"])
    deliveries = await settled(app, execution["id"], len(targets))
    assert {d.status for d in deliveries} == {"failed"}
    for attempt in await attempts(app, [d.id for d in deliveries]):
        assert attempt.error is not None
        assert attempt.error.startswith("refused by the outbound policy"), attempt.error
    assert_never_reached(connect_spy, forbidden)


async def test_apprise_redirects_inside_are_never_followed(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_search: FakeSearxng,
    receiver: WebhookReceiver,
    forbidden: WebhookReceiver,
    public_page: str,
    connect_spy: ConnectSpy,
) -> None:
    fake_search.set_results(None, [(public_page, "Public", "")])
    targets = inside(forbidden.port) + resolving_inside(forbidden.port)
    task = await new_task(
        client,
        alice,
        notify_behavior="always",
        notifications=[apprise(f"json://127.0.0.1:{receiver.port}/apprise")],
    )
    for target in targets:
        receiver.redirect_to(target, status=307)
        execution = await run_now(client, alice, task["id"])
        (delivery,) = await settled(app, execution["id"], 1)
        assert delivery.status != "delivered"
    assert len(receiver.requests) >= len(targets)
    assert_never_reached(connect_spy, forbidden)


async def test_the_connect_spy_sees_what_gets_through_and_keeps_the_rest_local(
    forbidden: WebhookReceiver, connect_spy: ConnectSpy
) -> None:
    """The seat belt itself: a loopback connection outside 127.0.0.1 is made and recorded; a
    private one is recorded and refused without leaving the machine."""
    async with httpx.AsyncClient() as plain:
        assert (await plain.post(forbidden.url_for("/x"))).status_code == 200
        with pytest.raises(httpx.ConnectError):
            await plain.get("http://10.0.0.1:9/")
    assert connect_spy.attempts == ["127.0.0.2", "10.0.0.1"]
    assert len(forbidden.requests) == 1
