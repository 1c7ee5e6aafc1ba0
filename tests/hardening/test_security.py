"""Secrets stay secret, and what users send cannot inject headers or forge log lines.

* An API key appears in exactly one response, the one that creates it: never in later
  responses, never in what Torale sends out, never in its log (captured as `torale serve` writes
  it, at debug level), never in the database; through its whole life (create, use, list, a run,
  a delivery, failed attempts with wrong keys, revoke, use after revoking).
* Webhook header values and Apprise URLs are secrets: no response shows them — on any GET route
  of the route table, for the owner and for an admin (admin listings, executions, deliveries
  and errors included) — and the log does not either.
* CR/LF (and NUL) in webhook header names and values is refused when a task is saved; URLs with
  control characters are refused (or at least never crash the server).
* Text from outside that carries a line break (a model name, an Apprise URL, a URL or a page
  title) cannot forge a log line: the formatted output of `torale.logs.OneLineFormatter` on
  records produced by real code paths has no line that starts like a forged record.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.fakes import Answer, FakeOpenAI, FakeSearxng, FakeWeb, WebhookReceiver, sequence
from tests.fixtures.logs import ServerLog
from tests.fixtures.users import ApiUser, create_test_user
from tests.hardening.routes import operations
from torale.db.models import ApiKey, Delivery, Task, WebhookConfig
from torale.notify.channels import MASK

MET = {
    "answer": "Apple will release the iPhone 18 on September 9.",
    "condition_met": True,
    "current_state": {"release_date": "September 9"},
    "reasoning": "The newsroom article names the date.",
    "confidence": 0.9,
    "sources": [],
}
ANNOUNCED = "Apple announced the iPhone 18 release for September 9."
# A line that would pass for a record of its own if a line break let it start a line.
FORGED = "2031-01-01 00:00:00,000 CRITICAL torale.auth: admin key rotated by attacker"


@pytest.fixture
def run_scheduler() -> bool:
    """The dispatcher delivers notifications in these tests."""
    return True


@pytest.fixture
def newsroom(fake_web: FakeWeb, fake_search: FakeSearxng, fake_model: FakeOpenAI) -> str:
    """A page the search finds and the model judges met: every run notifies."""
    fake_web.set_page(
        "/newsroom",
        f"<html><head><title>Newsroom</title></head><body><article><p>{ANNOUNCED}</p>"
        "<p>Apple designs the iPhone in California.</p></article></body></html>",
    )
    url = fake_web.url + "/newsroom"
    fake_search.set_results(None, [(url, "Apple Newsroom", "iPhone news")])
    fake_model.script = sequence(MET)
    return url


@pytest.fixture
def failing_receiver() -> Iterator[WebhookReceiver]:
    """A receiver on 127.0.0.1 that answers 500 to everything (failed deliveries, with errors)."""
    with WebhookReceiver() as fake:
        fake.set_default(Answer(status=500))
        yield fake


@pytest.fixture
async def admin(app: FastAPI) -> ApiUser:
    return await create_test_user(app, "root@example.com", role="admin")


async def run_now(client: httpx.AsyncClient, user: ApiUser, task_id: str) -> dict[str, Any]:
    response = await client.post(f"/api/v1/tasks/{task_id}/execute?wait=true", headers=user.headers)
    assert response.status_code == 200, response.text
    execution: dict[str, Any] = response.json()
    assert execution["status"] in ("success", "failed"), execution
    return execution


async def settled(app: FastAPI, task_id: str, count: int) -> list[Delivery]:
    """Wait until the task's `count` deliveries are delivered or failed."""
    import asyncio

    for _ in range(500):
        async with app.state.torale.sessions() as session:
            rows = list(
                await session.scalars(
                    select(Delivery).where(Delivery.task_id == uuid.UUID(task_id))
                )
            )
        if len(rows) >= count and all(d.status in ("delivered", "failed") for d in rows):
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"deliveries of {task_id} did not settle: {rows}")


class Transcript:
    """Every response a client saw (status line, headers and body), as text."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def record(self, response: httpx.Response) -> httpx.Response:
        head = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.parts.append(
            f"{response.request.method} {response.request.url} {response.status_code}"
        )
        self.parts.append(head)
        self.parts.append(response.text)
        return response

    @property
    def text(self) -> str:
        return "\n".join(self.parts)


# --- API keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("log_level", ["debug"])
async def test_an_api_key_is_shown_once_and_never_again(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
    server_log: ServerLog,
) -> None:
    seen = Transcript()

    async def call(method: str, url: str, key: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return seen.record(await client.request(method, url, headers=headers, **kwargs))

    # Create: the one response that carries the key.
    created = await client.post("/auth/api-keys", json={"name": "laptop"}, headers=alice.headers)
    assert created.status_code == 200, created.text
    key: str = created.json()["key"]
    key_id: str = created.json()["key_info"]["id"]
    assert key.startswith("sk_")
    assert len(key) >= 35
    assert created.json()["key_info"]["key_prefix"] == key[:12]

    # Use it: read, list, create a task with a webhook, run it, deliver, look at everything.
    assert (await call("GET", "/auth/me", key)).status_code == 200
    listing = await call("GET", "/auth/api-keys", key)
    assert key_id in [k["id"] for k in listing.json()["items"]]
    channel = {"type": "webhook", "url": receiver.url_for("/hook")}
    task = await call(
        "POST", "/api/v1/tasks", key, json={"search_query": "iPhone", "notifications": [channel]}
    )
    assert task.status_code == 200, task.text
    task_id = task.json()["id"]
    execution = seen.record(
        await client.post(
            f"/api/v1/tasks/{task_id}/execute?wait=true",
            headers={"Authorization": f"Bearer {key}"},
        )
    ).json()
    assert execution["status"] == "success", execution
    (delivery,) = await settled(app, task_id, 1)
    assert delivery.status == "delivered"
    for url in (
        f"/api/v1/tasks/{task_id}",
        "/api/v1/tasks",
        f"/api/v1/tasks/{task_id}/executions",
        f"/api/v1/tasks/{task_id}/notifications",
        "/api/v1/webhooks/deliveries",
        "/api/v1/webhooks/config",
    ):
        assert (await call("GET", url, key)).status_code == 200, url
    assert (await call("GET", "/auth/api-keys", alice.key)).status_code == 200

    # Wrong keys and tokens: refused, and not echoed.
    wrong_key = "sk_" + secrets.token_urlsafe(32)
    wrong_token = "eyJ" + secrets.token_urlsafe(40)
    for bad in (wrong_key, wrong_token, key[:-1], key + "x"):
        assert (await call("GET", "/auth/me", bad)).status_code == 401

    # Revoke: the key stops working at once; a revoked key is not echoed either.
    assert (await call("DELETE", f"/auth/api-keys/{key_id}", alice.key)).status_code == 200
    assert (await call("GET", "/auth/me", key)).status_code == 401
    assert (await call("GET", "/auth/api-keys", alice.key)).status_code == 200
    metrics = seen.record(await client.get("/metrics"))
    assert metrics.status_code == 200

    secret_part = key[12:]  # what the prefix shown in listings does not give away
    for secret in (key, secret_part, alice.key, alice.key[12:], wrong_key, wrong_token):
        assert secret not in seen.text, "a key or token came back in a response"
        assert secret not in server_log.text, "a key or token was written to the log"
        for sent in receiver.requests:  # what Torale sent out
            assert secret not in sent.body.decode(errors="replace")
            assert secret not in str(sent.headers)
    assert server_log.text, "nothing was logged: the capture does not work"

    # Stored only as a keyed hash.
    async with app.state.torale.sessions() as session:
        rows = (await session.execute(select(ApiKey))).scalars().all()
        stored = " ".join(str(vars(row)) for row in rows)
    assert key not in stored
    assert secret_part not in stored


# --- secrets in task channels ------------------------------------------------------------------

HEADER_SECRET = "hdr-" + secrets.token_hex(8)
APPRISE_SECRET = "apr" + secrets.token_hex(8)


def secret_channels(ok: WebhookReceiver, failing: WebhookReceiver) -> list[dict[str, Any]]:
    return [
        {
            "type": "webhook",
            "url": ok.url_for("/hook"),
            "headers": {"Authorization": f"Bearer {HEADER_SECRET}", "X-Token": HEADER_SECRET},
        },
        {
            "type": "webhook",
            "url": failing.url_for("/down"),
            "headers": {"X-Token": HEADER_SECRET},
        },
        {"type": "apprise", "url": f"json://user:{APPRISE_SECRET}@127.0.0.1:{ok.port}/apprise"},
        {
            "type": "apprise",
            "url": f"json://user:{APPRISE_SECRET}@127.0.0.1:{failing.port}/apprise-down",
        },
    ]


@pytest.mark.parametrize("log_level", ["info", "debug"])
async def test_channel_secrets_are_masked_in_every_response(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    admin: ApiUser,
    receiver: WebhookReceiver,
    failing_receiver: WebhookReceiver,
    newsroom: str,
    server_log: ServerLog,
) -> None:
    seen = Transcript()
    channels = secret_channels(receiver, failing_receiver)
    created = seen.record(
        await client.post(
            "/api/v1/tasks",
            json={"search_query": "iPhone", "notify_behavior": "always", "notifications": channels},
            headers=alice.headers,
        )
    )
    assert created.status_code == 200, created.text
    task = created.json()
    assert task["notifications"][0]["headers"] == {"Authorization": MASK, "X-Token": MASK}
    assert task["notifications"][2]["url"] == f"json://{MASK}"

    # Sent back as shown (masks in place) with PUT and PATCH: the answers stay masked...
    for method in ("PUT", "PATCH"):
        changed = seen.record(
            await client.request(
                method,
                f"/api/v1/tasks/{task['id']}",
                json={"notifications": task["notifications"]},
                headers=alice.headers,
            )
        )
        assert changed.status_code == 200, changed.text
    # ...and the real values were kept: a run delivers them to the receivers.
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success", execution
    deliveries = await settled(app, task["id"], 4)
    assert sorted(d.status for d in deliveries) == ["delivered", "delivered", "failed", "failed"]
    hooks = [r for r in receiver.requests if r.path == "/hook"]
    assert hooks, receiver.requests
    assert hooks[0].headers["authorization"] == f"Bearer {HEADER_SECRET}"
    assert any(r.path == "/apprise" for r in receiver.requests)

    # Every GET route of the route table, as the owner and as an admin.
    values = {
        "task_id": task["id"],
        "user_id": str(alice.id),
        "key_id": str(uuid.uuid4()),
        "execution_id": execution["id"],
        "position": "0",
    }
    checked = []
    for operation in operations(app):
        if operation.method != "GET":
            continue
        url = operation.url({name: values[name] for name in operation.parameters})
        for user in (alice, admin):
            response = seen.record(await client.get(url, headers=user.headers))
            assert response.status_code in operation.documented, (str(operation), response.text)
            checked.append((str(operation), user.email, response.status_code))
    assert ("GET /admin/queries", admin.email, 200) in checked
    assert ("GET /admin/errors", admin.email, 200) in checked
    assert ("GET /admin/executions", admin.email, 200) in checked
    assert ("GET /api/v1/webhooks/deliveries", alice.email, 200) in checked
    assert ("GET /api/v1/tasks/{task_id}/executions", alice.email, 200) in checked

    for secret in (HEADER_SECRET, APPRISE_SECRET):
        assert secret not in seen.text, f"{secret} shown in a response"
        assert secret not in server_log.text, f"{secret} written to the log"


async def test_a_masked_apprise_url_is_not_logged_when_it_is_refused(
    client: httpx.AsyncClient, alice: ApiUser, server_log: ServerLog
) -> None:
    """An Apprise URL is a secret even when it has a typo: refusing it must not log it."""
    token = "tok" + secrets.token_hex(10)
    response = await client.post(
        "/api/v1/tasks",
        json={
            "search_query": "q",
            "notifications": [{"type": "apprise", "url": f"slacks://{token}/{token}/C0FFEE"}],
        },
        headers=alice.headers,
    )
    assert response.status_code == 422, response.text
    assert token not in response.text
    assert token not in server_log.text, "a refused Apprise URL was written to the log"


async def test_a_webhook_url_is_not_logged_when_its_receiver_is_gone(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
    server_log: ServerLog,
) -> None:
    """Webhook URLs carry their service's token (Slack, Discord, …: torale/logs.py quiets
    httpx for this reason); turning a channel off after a 410 must not log the token."""
    token = "tok" + secrets.token_hex(12)
    receiver.set_default(Answer(status=410))
    channel = {"type": "webhook", "url": receiver.url_for(f"/services/T000/B000/{token}")}
    created = await client.post(
        "/api/v1/tasks",
        json={"search_query": "iPhone", "notifications": [channel]},
        headers=alice.headers,
    )
    assert created.status_code == 200, created.text
    await run_now(client, alice, created.json()["id"])
    (delivery,) = await settled(app, created.json()["id"], 1)
    assert delivery.status == "failed"
    task = await client.get(f"/api/v1/tasks/{created.json()['id']}", headers=alice.headers)
    assert task.json()["notifications"][0]["enabled"] is False  # the 410 was acted on
    assert "410" in server_log.text
    assert token not in server_log.text, "a webhook URL's token was written to the log"


# --- header injection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Token": "a\r\nX-Injected: 1"},
        {"X-Token": "a\nX-Injected: 1"},
        {"X-Token": "a\rb"},
        {"X-Token": "a\x00b"},
        {"X-Token\r\nX-Injected": "v1-secret"},
        {"X-Token: 1\nX-Injected": "v1-secret"},
    ],
    ids=["crlf-value", "lf-value", "cr-value", "nul-value", "crlf-name", "colon-lf-name"],
)
async def test_header_injection_is_refused_when_saved(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, headers: dict[str, str]
) -> None:
    channel = {"type": "webhook", "url": "https://hooks.example.com/x", "headers": headers}
    created = await client.post(
        "/api/v1/tasks",
        json={"search_query": "q", "notifications": [channel]},
        headers=alice.headers,
    )
    assert created.status_code == 422, created.text
    assert created.json()["detail"][0]["loc"][:3] == ["body", "notifications", 0]
    for value in headers.values():  # header values are secrets: never echoed back
        assert value not in created.text
        assert value.encode("unicode_escape").decode() not in created.text

    task = await client.post("/api/v1/tasks", json={"search_query": "q"}, headers=alice.headers)
    before = task.json()
    for method in ("PUT", "PATCH"):
        changed = await client.request(
            method,
            f"/api/v1/tasks/{before['id']}",
            json={"notifications": [channel]},
            headers=alice.headers,
        )
        assert changed.status_code == 422, changed.text
    after = await client.get(f"/api/v1/tasks/{before['id']}", headers=alice.headers)
    assert after.json() == before
    async with app.state.torale.sessions() as session:
        stored = (await session.scalars(select(Task))).all()
    assert [t.notifications for t in stored] == [[]]


CONTROL_URLS = [
    "https://hooks.example.com/a\r\nX-Injected: 1",
    "https://hooks.example.com/a\nb",
    "https://hooks.example.com/\x00",
]


@pytest.mark.parametrize("url", CONTROL_URLS, ids=["crlf", "lf", "nul"])
async def test_urls_with_control_characters_are_refused_not_crashed_on(
    app: FastAPI, alice: ApiUser, url: str
) -> None:
    """A URL that no HTTP client can send must be refused where it enters (422), never become
    a 500 or a saved channel whose every delivery fails."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://torale.test") as client:
        tested = await client.post(
            "/api/v1/webhooks/test", json={"url": url}, headers=alice.headers
        )
        assert tested.status_code == 422, ("POST /api/v1/webhooks/test", tested.text)
        config = await client.put(
            "/api/v1/webhooks/config", json={"url": url}, headers=alice.headers
        )
        assert config.status_code == 422, ("PUT /api/v1/webhooks/config", config.text)
        channel = {"type": "webhook", "url": url}
        task = await client.post(
            "/api/v1/tasks",
            json={"search_query": "q", "notifications": [channel]},
            headers=alice.headers,
        )
        assert task.status_code == 422, ("webhook channel", task.text)
        page = await client.post(
            "/api/v1/tasks", json={"search_query": "q", "urls": [url]}, headers=alice.headers
        )
        assert page.status_code == 422, ("task urls", page.text)
    async with app.state.torale.sessions() as session:
        assert (await session.scalars(select(Task))).all() == []
        configs = (await session.scalars(select(WebhookConfig))).all()
        assert [c.url for c in configs if c.url] == []


# --- log injection ------------------------------------------------------------------------------


def assert_no_forged_line(log: ServerLog) -> None:
    forged = [line for line in log.lines if line.startswith(FORGED[:10])]
    assert forged == [], f"a line break in outside text forged log lines: {forged}"


@pytest.mark.parametrize("extra_settings", [{"allowed_models": "*"}])
async def test_a_model_name_with_a_line_break_cannot_forge_a_log_line(
    client: httpx.AsyncClient,
    alice: ApiUser,
    newsroom: str,
    fake_model: FakeOpenAI,
    server_log: ServerLog,
) -> None:
    """`config.model` is user input; when the model fails, the run's failure is logged with the
    model's name in the message (and in the exception's text)."""
    created = await client.post(
        "/api/v1/tasks",
        json={"search_query": "iPhone", "config": {"model": f"m\n{FORGED}"}},
        headers=alice.headers,
    )
    if created.status_code == 422:  # refusing control characters in model names is fine too
        return
    assert created.status_code == 200, created.text
    fake_model.fail_next(5, 400)
    execution = await run_now(client, alice, created.json()["id"])
    assert execution["status"] == "failed", execution
    assert "torale.engine" in server_log.text, "the failure was not logged"
    assert_no_forged_line(server_log)


async def test_an_apprise_url_with_a_line_break_cannot_forge_a_log_line(
    client: httpx.AsyncClient, alice: ApiUser, server_log: ServerLog
) -> None:
    response = await client.post(
        "/api/v1/tasks",
        json={
            "search_query": "q",
            "notifications": [{"type": "apprise", "url": f"nosuch://x\n{FORGED}"}],
        },
        headers=alice.headers,
    )
    assert response.status_code == 422, response.text
    assert_no_forged_line(server_log)


def outside_text_with_line_breaks(web: FakeWeb, search: FakeSearxng) -> None:
    """Search hits (URL, title) and a page (its title) that carry line breaks."""
    web.set_page(
        "/titled",
        f"<html><head><title>News\n{FORGED}</title></head><body><article>"
        "<p>Nothing has been announced yet about the next release.</p></article></body></html>",
    )
    search.set_results(
        None,
        [
            (web.url + "/titled", f"Title\n{FORGED}", "snippet"),
            (web.url + "/missing%0A" + FORGED.replace(" ", "%20"), f"T\r\n{FORGED}", "s"),
            (web.url + f"/gone\n{FORGED}", f"T\n{FORGED}", "s"),
        ],
    )


async def test_urls_and_titles_with_line_breaks_cannot_forge_log_lines(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_search: FakeSearxng,
    fake_model: FakeOpenAI,
    server_log: ServerLog,
) -> None:
    """Search results (URL and title from the search provider) and pages (their titles) come
    from outside; a run that reads them, and fails to read some, logs about them."""
    outside_text_with_line_breaks(fake_web, fake_search)
    fake_model.script = sequence({**MET, "condition_met": False})
    created = await client.post(
        "/api/v1/tasks", json={"search_query": "iPhone"}, headers=alice.headers
    )
    assert created.status_code == 200, created.text
    await run_now(client, alice, created.json()["id"])
    assert "torale.engine" in server_log.text, "the run logged nothing about the pages"
    assert_no_forged_line(server_log)


async def test_a_search_hit_no_client_can_fetch_does_not_fail_the_run(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_search: FakeSearxng,
    fake_model: FakeOpenAI,
) -> None:
    """A search provider's URL with a control character cannot be fetched; it is one unreadable
    page among others, not a reason to fail the run (every run of the query would fail)."""
    outside_text_with_line_breaks(fake_web, fake_search)
    fake_model.script = sequence({**MET, "condition_met": False})
    created = await client.post(
        "/api/v1/tasks", json={"search_query": "iPhone"}, headers=alice.headers
    )
    execution = await run_now(client, alice, created.json()["id"])
    assert execution["status"] == "success", execution["error_message"]
    assert execution["usage"]["pages_fetched"] == 1
    assert execution["usage"]["pages_failed"] == 2
