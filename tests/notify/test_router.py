"""The /api/v1/webhooks routes and the channel rules enforced when a task is saved."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import torale.net
from tests.fakes import Answer, WebhookReceiver
from tests.fixtures.engine import new_task
from tests.fixtures.notify import (
    attempts_api,
    is_standard_secret,
    notifying_task,
    readable_by_standardwebhooks,
    run_notifying,
    settled,
    webhook_secret,
)
from tests.fixtures.users import ApiUser

CONFIG = "/api/v1/webhooks/config"
ROTATE = "/api/v1/webhooks/config/rotate-secret"
TEST = "/api/v1/webhooks/test"
DELIVERIES = "/api/v1/webhooks/deliveries"


def locs(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


async def test_config_makes_a_secret_once(client: httpx.AsyncClient, alice: ApiUser) -> None:
    first = await client.get(CONFIG, headers=alice.headers)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["url"] is None
    assert body["enabled"] is True
    assert body["secret"].startswith("whsec_")
    again = await client.get(CONFIG, headers=alice.headers)
    assert again.json() == body
    rotated = (await client.post(ROTATE, headers=alice.headers)).json()
    assert rotated["secret"] != body["secret"]
    assert rotated["secret"].startswith("whsec_")
    assert (await client.get(CONFIG, headers=alice.headers)).json() == rotated


async def test_put_config_changes_only_what_is_sent(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    secret = (await client.get(CONFIG, headers=alice.headers)).json()["secret"]
    url = "https://hooks.example.com/torale"
    put = await client.put(CONFIG, json={"url": url}, headers=alice.headers)
    assert put.status_code == 200, put.text
    assert put.json() == {"url": url, "secret": secret, "enabled": True}
    off = await client.put(CONFIG, json={"enabled": False}, headers=alice.headers)
    assert off.json() == {"url": url, "secret": secret, "enabled": False}
    removed = await client.put(CONFIG, json={"url": None}, headers=alice.headers)
    assert removed.json() == {"url": None, "secret": secret, "enabled": False}
    unknown = await client.put(CONFIG, json={"secret": "whsec_mine"}, headers=alice.headers)
    assert unknown.status_code == 422


UNSAFE_URLS = [
    "http://10.0.0.5/hook",  # private
    "https://10.0.0.5/hook",
    "https://127.0.0.2/hook",  # loopback outside the allowed 127.0.0.1/32
    "https://169.254.169.254/latest/meta-data",
    "https://localhost/hook",
    "https://metadata.google.internal/x",
    "https://user:pw@hooks.example.com/x",
    "ftp://hooks.example.com/x",
    "not a url",
]


async def test_put_config_refuses_unsafe_urls(client: httpx.AsyncClient, alice: ApiUser) -> None:
    refused = {}
    for url in UNSAFE_URLS:
        response = await client.put(CONFIG, json={"url": url}, headers=alice.headers)
        refused[url] = (
            response.status_code,
            [e["loc"] for e in response.json()["detail"]] if response.status_code == 422 else None,
        )
    assert refused == dict.fromkeys(UNSAFE_URLS, (422, [["body", "url"]]))
    assert (await client.get(CONFIG, headers=alice.headers)).json()["url"] is None


@pytest.mark.parametrize("extra_settings", [{"allow_http_webhooks": False}])
async def test_plain_http_is_refused_unless_the_server_allows_it(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    http = "http://hooks.example.com/h"
    assert locs(await client.put(CONFIG, json={"url": http}, headers=alice.headers)) == [
        ["body", "url"]
    ]
    assert locs(await client.post(TEST, json={"url": http}, headers=alice.headers)) == [
        ["body", "url"]
    ]
    task = await client.post(
        "/api/v1/tasks",
        json={"search_query": "q", "notifications": [{"type": "webhook", "url": http}]},
        headers=alice.headers,
    )
    assert locs(task) == [["body", "notifications", 0, "url"]]
    https = await client.put(
        CONFIG, json={"url": "https://hooks.example.com/h"}, headers=alice.headers
    )
    assert https.status_code == 200, https.text


async def test_the_test_route_sends_a_signed_sample_and_reports_the_answer(
    client: httpx.AsyncClient, alice: ApiUser, receiver: WebhookReceiver
) -> None:
    secret = await webhook_secret(client, alice)
    receiver.secret = secret
    # Without a URL given or configured there is nowhere to send.
    assert locs(await client.post(TEST, json={}, headers=alice.headers)) == [["body", "url"]]

    sent = await client.post(TEST, json={"url": receiver.url_for("/t")}, headers=alice.headers)
    assert sent.status_code == 200, sent.text
    report = sent.json()
    assert report["delivered"] is True
    assert report["status_code"] == 200
    assert report["error"] is None
    assert report["url"] == receiver.url_for("/t")
    assert report["duration_ms"] >= 0
    (got,) = receiver.received
    assert got.verified, got.verify_error
    assert got.webhook_id == report["webhook_id"]
    event = got.event
    assert event["event_type"] == "webhook.test"
    assert event["id"] == report["webhook_id"]
    assert event["api_version"] == "v1"

    # The configured URL is the default; the receiver's answer is reported as it is.
    await client.put(CONFIG, json={"url": receiver.url_for("/mine")}, headers=alice.headers)
    receiver.answer_next(Answer(status=503))
    failed = (await client.post(TEST, json={}, headers=alice.headers)).json()
    assert failed["delivered"] is False
    assert failed["status_code"] == 503
    assert failed["url"] == receiver.url_for("/mine")
    assert "503" in failed["error"]
    assert receiver.received[-1].path == "/mine"

    receiver.stop()
    down = (await client.post(TEST, json={}, headers=alice.headers)).json()
    assert (down["delivered"], down["status_code"]) == (False, None)
    assert "could not reach" in down["error"]

    # Nothing the test route sends is queued or listed.
    assert (await attempts_api(client, alice))["total"] == 0
    # Forbidden targets are refused before anything is sent.
    refused = await client.post(TEST, json={"url": "http://127.0.0.2:9/x"}, headers=alice.headers)
    assert locs(refused) == [["body", "url"]]


async def test_after_a_rotation_only_the_new_secret_verifies(
    client: httpx.AsyncClient, alice: ApiUser, receiver: WebhookReceiver
) -> None:
    old = await webhook_secret(client, alice)
    await client.post(ROTATE, headers=alice.headers)
    new = await webhook_secret(client, alice)
    assert new != old
    receiver.secret = new
    report = (
        await client.post(TEST, json={"url": receiver.url_for("/r")}, headers=alice.headers)
    ).json()
    assert report["delivered"] is True, report
    (got,) = receiver.received
    Webhook(new).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(got.body, got.headers)
    # A receiver still holding the old secret refuses it.
    receiver.secret = old
    stale = (
        await client.post(TEST, json={"url": receiver.url_for("/r")}, headers=alice.headers)
    ).json()
    assert (stale["delivered"], stale["status_code"]) == (False, 401)


async def test_secrets_follow_the_standard_webhooks_format(
    client: httpx.AsyncClient, alice: ApiUser, receiver: WebhookReceiver
) -> None:
    """Standard Webhooks secrets are `whsec_` + *standard* base64. Receivers in any language
    decode them so; every secret must also sign (and /test must never answer 500)."""
    problems: dict[str, list[str]] = {}
    for _ in range(20):
        secret = (await client.post(ROTATE, headers=alice.headers)).json()["secret"]
        receiver.secret = secret
        if not is_standard_secret(secret):
            problems.setdefault("not `whsec_` + standard base64", []).append(secret)
        if not readable_by_standardwebhooks(secret):
            problems.setdefault("standardwebhooks cannot decode it", []).append(secret)
        try:
            test = await client.post(
                TEST, json={"url": receiver.url_for("/s")}, headers=alice.headers
            )
        except Exception as exc:  # the in-process client re-raises what a server answers 500 to
            problems.setdefault(f"POST /test raised {type(exc).__name__}", []).append(secret)
            continue
        if test.status_code != 200 or not test.json()["delivered"]:
            problems.setdefault(f"POST /test answered {test.status_code}", []).append(secret)
    summary = {problem: f"{len(got)} of 20, e.g. {got[0]}" for problem, got in problems.items()}
    assert summary == {}


async def test_users_never_see_each_others_webhooks(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    bob: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    alice_secret = await webhook_secret(client, alice)
    receiver.secret = alice_secret
    await client.put(CONFIG, json={"url": receiver.url_for("/alice")}, headers=alice.headers)
    task = await notifying_task(client, alice, [])
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    (outgoing,) = await app.state.torale.dispatcher.claim(limit=5, now=delivery.next_attempt_at)
    assert (await app.state.torale.dispatcher.deliver(outgoing)).ok
    await settled(app, [delivery.id])
    assert (await attempts_api(client, alice))["total"] == 1

    bobs = (await client.get(CONFIG, headers=bob.headers)).json()
    assert bobs["url"] is None
    assert bobs["secret"] != alice_secret
    assert (await attempts_api(client, bob))["total"] == 0
    assert (await attempts_api(client, bob, task_id=task["id"])) == {
        "items": [],
        "total": 0,
        "page": 1,
        "limit": 20,
    }
    await client.put(CONFIG, json={"url": "https://bob.example.com/h"}, headers=bob.headers)
    await client.post(ROTATE, headers=bob.headers)
    mine = (await client.get(CONFIG, headers=alice.headers)).json()
    assert mine == {"url": receiver.url_for("/alice"), "secret": alice_secret, "enabled": True}
    # Bob's tasks are never sent to Alice's account webhook.
    bobs_task = await notifying_task(client, bob, [])
    queued = await run_notifying(app, client, bob, bobs_task["id"])
    assert [d.channel["url"] for d in queued] == ["https://bob.example.com/h"]

    for route, method in ((CONFIG, "GET"), (DELIVERIES, "GET"), (ROTATE, "POST"), (TEST, "POST")):
        anonymous = await client.request(method, route, json={} if method == "POST" else None)
        assert anonymous.status_code == 401, route


WEBHOOK = {"type": "webhook", "url": "https://hooks.example.com/ok"}
EMAIL = {"type": "email", "address": "alice@example.com"}


BAD_CHANNELS: list[tuple[dict[str, Any], list[Any]]] = [
    ({"type": "webhook", "url": "https://10.1.2.3/h"}, [1, "url"]),
    ({"type": "webhook", "url": "https://127.0.0.2:8000/h"}, [1, "url"]),
    ({"type": "webhook", "url": "https://[::1]/h"}, [1, "url"]),
    ({"type": "webhook", "url": "https://localhost/h"}, [1, "url"]),
    ({"type": "webhook", "url": "javascript:alert(1)"}, [1, "url"]),
    ({"type": "webhook", "url": "https://x.io/h", "headers": {"webhook-id": "x"}}, [1]),
    ({"type": "webhook", "url": "https://x.io/h", "headers": {"Webhook-Signature": "v1,x"}}, [1]),
    ({"type": "webhook", "url": "https://x.io/h", "headers": {"Bad Name": "x"}}, [1]),
    # Headers of the connection and the framing: sending them makes a malformed request.
    *(
        (
            {"type": "webhook", "url": "https://x.io/h", "headers": {name: "x"}},
            [1, "webhook", "headers", name, "[key]"],
        )
        for name in (
            "Transfer-Encoding",
            "connection",
            "Upgrade",
            "TE",
            "Trailer",
            "Expect",
            "Content-Encoding",
            "Proxy-Authorization",
            "Host",
            "Content-Length",
        )
    ),
    # Values every delivery would fail on: refused when saved, at the header.
    *(
        (
            {"type": "webhook", "url": "https://x.io/h", "headers": {"X-Token": value}},
            [1, "webhook", "headers", "X-Token"],
        )
        for value in ("caf\u00e9", "a\u0000b", "a\rb", "a\x1bb", "a\x7fb")
    ),
    ({"type": "apprise", "url": "jsons://x.io/h?+Transfer-Encoding=chunked"}, [1, "url"]),
    ({"type": "apprise", "url": "mailto://u:p@8.8.8.8?smtp=127.0.0.1&port=25"}, [1, "url"]),
    ({"type": "webhook", "url": "https://x.io/h", "secret": "mine"}, [1]),
    ({"type": "email", "address": "not-an-email"}, [1, "email", "address"]),
    ({"type": "email", "address": "a@b@c.com"}, [1, "email", "address"]),
    ({"type": "email"}, [1, "email", "address"]),
    ({"type": "sms", "to": "+15550100"}, [1]),
    ({"url": "https://x.io/h"}, [1]),
    ({"type": "apprise", "url": "notaservice://whatever"}, [1, "url"]),
    ({"type": "apprise", "url": "json://"}, [1, "url"]),
    ({"type": "apprise", "url": "slack://********"}, [1, "url"]),
]


async def test_bad_channels_are_refused_at_save_time(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    """Each bad channel (after a good one) is refused with 422 at its own `loc`, on create and
    on update; nothing is written."""
    task = await new_task(client, alice, notifications=[WEBHOOK])
    problems = []
    for channel, loc in BAD_CHANNELS:
        expected = ["body", "notifications", *loc]
        body = {"search_query": "q", "notifications": [EMAIL, channel]}
        created = await client.post("/api/v1/tasks", json=body, headers=alice.headers)
        updated = await client.put(
            f"/api/v1/tasks/{task['id']}",
            json={"notifications": [EMAIL, channel]},
            headers=alice.headers,
        )
        for what, response in (("create", created), ("update", updated)):
            if response.status_code != 422:
                problems.append(f"{what} {channel}: {response.status_code}")
                continue
            found = [e["loc"] for e in response.json()["detail"]]
            if not any(e[: len(expected)] == expected for e in found):
                problems.append(f"{what} {channel}: refused at {found}, not {expected}")
    assert problems == []
    assert (await client.get("/api/v1/tasks", headers=alice.headers)).json()["total"] == 1
    after = (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice.headers)).json()
    assert after["notifications"] == task["notifications"]


async def test_the_webhook_test_does_not_tell_where_an_internal_name_points(
    client: httpx.AsyncClient, alice: ApiUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vm` resolves to a loopback address the server may not reach: the user hears that the
    policy refused, not which address the name has."""
    real = torale.net._resolve

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.2"] if host == "vm.test" else await real(host, port)

    monkeypatch.setattr(torale.net, "_resolve", resolve)
    with WebhookReceiver(host="127.0.0.2") as internal:
        response = await client.post(
            TEST, json={"url": f"http://vm.test:{internal.port}/x"}, headers=alice.headers
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["delivered"], result["error"]) == (False, "refused by the outbound policy")
        assert "127.0.0.2" not in response.text
        assert internal.requests == []
