"""Webhook deliveries against a real receiver that verifies Standard Webhooks signatures.

End-to-end cases let the app's own dispatcher loop send (run_scheduler=True); the precise ones
(a dispatcher dying mid-send, two dispatchers claiming at once, a secret rotated between two
attempts) drive `claim`/`deliver` by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.fakes import Answer, WebhookReceiver
from tests.fixtures.notify import (
    ANNOUNCED,
    attempts_api,
    attempts_of,
    deliveries_of,
    eventually,
    notifying_task,
    run_notifying,
    settled,
    webhook_secret,
)
from tests.fixtures.users import ApiUser
from torale.db.models import Delivery
from torale.notify.dispatcher import INTERRUPTED, Dispatcher


@pytest.fixture
def run_scheduler() -> bool:
    return True  # the dispatcher sends in the background, as in production


def hook(receiver: WebhookReceiver, path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": receiver.url_for(path), **extra}


def verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


async def test_a_run_delivers_a_signed_event(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    receiver.secret = await webhook_secret(client, alice)
    task = await notifying_task(
        client,
        alice,
        [hook(receiver, "/hooks/alice", headers={"X-Team": "ops"})],
        context={"ticket": 42},
    )
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    (got,) = await receiver.wait_for(1)

    assert got.verified, got.verify_error
    assert got.path == "/hooks/alice"
    assert got.webhook_id == str(delivery.id)
    assert got.headers["x-team"] == "ops"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("Torale-Webhooks/")
    event = got.event
    assert event["id"] == str(delivery.id)
    assert event["event_type"] == "task.condition_met"
    assert event["api_version"] == "v1"
    assert datetime.fromisoformat(event["created_at"]).tzinfo is not None
    assert event["data"]["task"]["id"] == task["id"]
    assert event["data"]["execution"]["id"] == str(delivery.execution_id)
    assert event["data"]["result"]["answer"] == "Apple will release the iPhone 18 on September 9."
    assert event["data"]["result"]["condition_met"] is True
    assert event["data"]["result"]["grounding_sources"][0]["url"] == newsroom
    assert event["data"]["context"] == {"ticket": 42}
    assert ANNOUNCED not in got.body.decode()  # the event carries the verdict, not the page

    (done,) = (await settled(app, [delivery.id])).values()
    assert (done.status, done.attempts, done.last_error) == ("delivered", 1, None)
    listing = await attempts_api(client, alice)
    assert listing["total"] == 1
    (item,) = listing["items"]
    assert item["delivery_id"] == str(delivery.id)
    assert item["task_id"] == task["id"]
    assert item["channel_type"] == "webhook"
    assert item["target"] == receiver.url_for("/hooks/alice")
    assert (item["success"], item["status_code"], item["error"]) == (True, 200, None)
    assert item["delivery_status"] == "delivered"


@pytest.mark.parametrize("extra_settings", [{"delivery_retry_delays": "0.1,0.2,0.4,0.8,1.6,3"}])
async def test_receiver_down_for_a_while_gets_every_delivery_with_its_id(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    receiver.secret = await webhook_secret(client, alice)
    receiver.stop()
    task = await notifying_task(client, alice, [hook(receiver, "/down")])
    queued = [d for _ in range(3) for d in await run_notifying(app, client, alice, task["id"])]
    ids = [d.id for d in queued]
    assert len(set(ids)) == 3

    # Every delivery fails at least once against the closed port...
    async def tried() -> list[Delivery]:
        return [d for d in await deliveries_of(app, task_id=task["id"]) if d.last_error]

    await eventually(tried, lambda found: len(found) == 3, what="a failed attempt each")
    assert receiver.received == []
    # ...and when the receiver comes back, each arrives, signed, with its original id.
    receiver.restart()
    done = await settled(app, ids, timeout=15)
    assert {d.status for d in done.values()} == {"delivered"}
    accepted = await receiver.wait_for(3)
    assert sorted(r.webhook_id or "" for r in accepted) == sorted(str(i) for i in ids)
    assert all(r.verified and r.event["id"] == r.webhook_id for r in accepted)
    for delivery in done.values():
        attempts = await attempts_of(app, delivery.id)
        assert len(attempts) == delivery.attempts >= 2
        assert [a.success for a in attempts] == [False] * (len(attempts) - 1) + [True]
        assert attempts[0].error is not None
        assert "could not reach the receiver" in attempts[0].error


@pytest.mark.parametrize("run_scheduler", [False])
async def test_a_dispatcher_dying_mid_send_loses_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    state = app.state.torale
    receiver.secret = await webhook_secret(client, alice)
    task = await notifying_task(client, alice, [hook(receiver, "/slow")])
    (delivery,) = await run_notifying(app, client, alice, task["id"])

    # The first process claims the delivery and is killed while the receiver is answering.
    receiver.answer_next(Answer(delay=0.5))
    first: Dispatcher = state.dispatcher
    (outgoing,) = await first.claim(limit=10, now=datetime.now(UTC))
    assert outgoing.id == delivery.id
    sending = asyncio.create_task(first.deliver(outgoing))
    await receiver.wait_for_arrivals(1)  # the request is at the receiver
    sending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    (stuck,) = await deliveries_of(app, task_id=task["id"])
    assert (stuck.status, stuck.attempts) == ("sending", 1)

    # Another process finds it leased: no second send while the lease runs...
    second = Dispatcher(state.settings, state.sessions, state.write_lock)
    try:
        assert await second.claim(limit=10, now=datetime.now(UTC)) == []
        # ...and once the lease has run out, it takes it over and sends it again, same id.
        later = datetime.now(UTC) + second.lease + timedelta(seconds=1)
        (again,) = await second.claim(limit=10, now=later)
        assert again.id == delivery.id
        assert again.payload == outgoing.payload
        result = await second.deliver(again)
        assert result.ok, result
    finally:
        await second.stop()

    arrived = receiver.requests
    assert [r.headers["webhook-id"] for r in arrived] == [str(delivery.id)] * 2  # can dedupe
    assert arrived[0].body == arrived[1].body
    # The takeover's send was answered; the interrupted one may have been answered too (the
    # receiver finishes it after the sender is gone): same id, so the receiver can dedupe.
    accepted = await receiver.wait_for(1)
    assert all(a.verified for a in accepted)
    assert arrived[1] in [a.request for a in accepted]
    (done,) = await deliveries_of(app, task_id=task["id"])
    assert (done.status, done.attempts) == ("delivered", 2)
    attempts = await attempts_of(app, delivery.id)
    # (The interrupted attempt is stamped with the takeover's clock, past the lease here.)
    assert sorted((a.success, a.error or "") for a in attempts) == [
        (False, INTERRUPTED),
        (True, ""),
    ]


@pytest.mark.parametrize("run_scheduler", [False])
async def test_two_dispatchers_never_claim_the_same_delivery(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    state = app.state.torale
    receiver.secret = await webhook_secret(client, alice)
    task = await notifying_task(client, alice, [hook(receiver, f"/c{i}") for i in range(3)])
    queued = [d for _ in range(2) for d in await run_notifying(app, client, alice, task["id"])]
    assert len(queued) == 6

    other = Dispatcher(state.settings, state.sessions, state.write_lock)
    try:
        now = datetime.now(UTC)
        mine, theirs = await asyncio.gather(
            state.dispatcher.claim(limit=4, now=now), other.claim(limit=4, now=now)
        )
        assert not {o.id for o in mine} & {o.id for o in theirs}
        assert {o.id for o in [*mine, *theirs]} == {d.id for d in queued}
        assert await other.claim(limit=4, now=now) == []
        results = await asyncio.gather(
            *(state.dispatcher.deliver(o) for o in mine), *(other.deliver(o) for o in theirs)
        )
    finally:
        await other.stop()
    assert all(r.ok for r in results)
    accepted = await receiver.wait_for(6)
    assert sorted(r.webhook_id or "" for r in accepted) == sorted(str(d.id) for d in queued)


async def test_failures_are_retried_with_backoff_and_every_attempt_is_listed(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    receiver.secret = await webhook_secret(client, alice)
    receiver.fail_next(2, 503)
    task = await notifying_task(client, alice, [hook(receiver, "/flaky")])
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    (done,) = (await settled(app, [delivery.id])).values()
    assert (done.status, done.attempts) == ("delivered", 3)

    got = receiver.received
    assert [r.status for r in got] == [503, 503, 200]
    assert {r.webhook_id for r in got} == {str(delivery.id)}
    assert all(r.verified for r in got)
    gaps = [b.request.at - a.request.at for a, b in itertools.pairwise(got)]
    assert all(gap >= 0.04 for gap in gaps), gaps  # 0.05 s, ±10 % jitter

    # Another task's attempts are not in this task's list.
    other = await notifying_task(client, alice, [hook(receiver, "/other")])
    (other_delivery,) = await run_notifying(app, client, alice, other["id"])
    await settled(app, [other_delivery.id])
    assert (await attempts_api(client, alice))["total"] == 4

    listing = await attempts_api(client, alice, task_id=task["id"])
    assert {k: listing[k] for k in ("total", "page", "limit")} == {
        "total": 3,
        "page": 1,
        "limit": 20,
    }
    items = listing["items"]
    assert [(i["success"], i["status_code"]) for i in items] == [
        (True, 200),
        (False, 503),
        (False, 503),
    ]  # newest first
    assert [i["error"] for i in items] == [None] + ["the receiver answered HTTP 503"] * 2
    assert sum(i["success"] for i in items) == 1
    assert {i["delivery_id"] for i in items} == {str(delivery.id)}
    assert all(i["delivery_status"] == "delivered" for i in items)
    stamps = [datetime.fromisoformat(i["attempted_at"]) for i in items]
    assert stamps == sorted(stamps, reverse=True)

    first = await attempts_api(client, alice, task_id=task["id"], limit=2)
    second = await attempts_api(client, alice, task_id=task["id"], limit=2, page=2)
    assert (first["total"], len(first["items"]), second["total"], len(second["items"])) == (
        3,
        2,
        3,
        1,
    )
    assert [i["id"] for i in first["items"] + second["items"]] == [i["id"] for i in items]
    bad = await client.get("/api/v1/webhooks/deliveries?limit=0", headers=alice.headers)
    assert bad.status_code == 422


async def test_a_receiver_that_always_fails_ends_failed_after_every_retry(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    receiver.secret = await webhook_secret(client, alice)
    receiver.set_default(Answer(status=500))
    task = await notifying_task(client, alice, [hook(receiver, "/broken")])
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    (done,) = (await settled(app, [delivery.id])).values()

    delays = app.state.torale.settings.retry_delays
    assert (done.status, done.attempts) == ("failed", len(delays) + 1)
    assert done.last_error == "gave up after 4 attempts: the receiver answered HTTP 500"
    assert done.completed_at is not None
    await asyncio.sleep(0.3)  # nothing more is tried
    assert len(receiver.received) == len(delays) + 1
    listing = await attempts_api(client, alice, task_id=task["id"])
    assert listing["total"] == len(delays) + 1
    assert {(i["success"], i["status_code"]) for i in listing["items"]} == {(False, 500)}
    assert {i["delivery_status"] for i in listing["items"]} == {"failed"}


@pytest.mark.parametrize("run_scheduler", [False])
@pytest.mark.parametrize("extra_settings", [{"delivery_retry_delays": "0.05,30,60"}])
async def test_attempts_count_from_one_and_the_first_retry_waits_the_first_delay(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    dispatcher: Dispatcher = app.state.torale.dispatcher
    receiver.secret = await webhook_secret(client, alice)
    receiver.set_default(Answer(status=502))
    task = await notifying_task(client, alice, [hook(receiver, "/numbered")])
    (delivery,) = await run_notifying(app, client, alice, task["id"])

    (first,) = await dispatcher.claim(limit=5, now=datetime.now(UTC))
    assert first.id == delivery.id
    (claimed,) = await deliveries_of(app, task_id=task["id"])
    assert claimed.attempts == 1
    assert first.attempt == claimed.attempts == 1  # the sender is told which attempt this is
    failed_at = datetime.now(UTC)
    assert not (await dispatcher.deliver(first)).ok
    (waiting,) = await deliveries_of(app, task_id=task["id"])
    assert waiting.status == "pending"
    # The first retry comes after the first delay (0.05 s ± 10 %), not the second (30 s).
    assert waiting.next_attempt_at - failed_at < timedelta(seconds=5), waiting.next_attempt_at

    (second,) = await dispatcher.claim(limit=5, now=datetime.now(UTC) + timedelta(seconds=1))
    assert second.attempt == 2
    assert not (await dispatcher.deliver(second)).ok
    (still,) = await deliveries_of(app, task_id=task["id"])
    assert (still.status, still.attempts) == ("pending", 2)


@pytest.mark.parametrize("extra_settings", [{"webhook_timeout_seconds": 0.3}])
async def test_a_receiver_slower_than_the_timeout_is_retried(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    receiver.secret = await webhook_secret(client, alice)
    receiver.answer_next(Answer(delay=0.6))
    task = await notifying_task(client, alice, [hook(receiver, "/slow")])
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    (done,) = (await settled(app, [delivery.id])).values()
    assert (done.status, done.attempts) == ("delivered", 2)
    attempts = await attempts_of(app, delivery.id)
    assert [(a.success, a.status_code, a.error) for a in attempts] == [
        (False, None, "the receiver did not answer in time"),
        (True, 200, None),
    ]
    assert attempts[0].duration_ms < 550
    arrived = await receiver.wait_for_arrivals(2)
    assert [r.headers["webhook-id"] for r in arrived] == [str(delivery.id)] * 2


async def test_410_gone_fails_the_delivery_and_turns_the_channel_off(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    secret = await webhook_secret(client, alice)
    receiver.secret = secret
    with WebhookReceiver(secret) as gone:
        gone.set_default(Answer(status=410))
        put = await client.put(
            "/api/v1/webhooks/config", json={"url": gone.url_for("/account")}, headers=alice.headers
        )
        assert put.status_code == 200, put.text
        task = await notifying_task(
            client, alice, [hook(gone, "/task"), hook(receiver, "/still-here")]
        )
        queued = await run_notifying(app, client, alice, task["id"])
        assert sorted(d.channel_index for d in queued) == [-1, 0, 1]
        done = await settled(app, [d.id for d in queued])
        by_index = {d.channel_index: d for d in done.values()}
        assert (by_index[0].status, by_index[0].attempts) == ("failed", 1)
        assert (by_index[-1].status, by_index[-1].attempts) == ("failed", 1)
        assert by_index[1].status == "delivered"
        assert by_index[0].last_error is not None
        assert "410" in by_index[0].last_error
        assert sorted(r.path for r in gone.received) == ["/account", "/task"]

        stored = (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice.headers)).json()
        assert [c["enabled"] for c in stored["notifications"]] == [False, True]
        listed = (await client.get("/api/v1/tasks", headers=alice.headers)).json()["items"]
        assert [c["enabled"] for c in listed[0]["notifications"]] == [False, True]
        config = (await client.get("/api/v1/webhooks/config", headers=alice.headers)).json()
        assert config["enabled"] is False
        failed = [i for i in (await attempts_api(client, alice))["items"] if not i["success"]]
        assert {i["status_code"] for i in failed} == {410}

        # The next run queues nothing for the channels that are gone.
        queued = await run_notifying(app, client, alice, task["id"])
        assert [d.channel_index for d in queued] == [1]
        await settled(app, [d.id for d in queued])
        assert len(gone.received) == 2

        # Turned back on by the user, the channel is used again.
        channels = stored["notifications"]
        channels[0]["enabled"] = True
        updated = await client.put(
            f"/api/v1/tasks/{task['id']}", json={"notifications": channels}, headers=alice.headers
        )
        assert updated.status_code == 200, updated.text
        gone.set_default(Answer(status=204))
        queued = await run_notifying(app, client, alice, task["id"])
        assert sorted(d.channel_index for d in queued) == [0, 1]
        done = await settled(app, [d.id for d in queued])
        assert {d.status for d in done.values()} == {"delivered"}


async def test_redirects_are_not_followed(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    secret = await webhook_secret(client, alice)
    receiver.secret = secret
    with WebhookReceiver(secret) as elsewhere:
        receiver.answer_next(Answer(status=307, location=elsewhere.url_for("/moved")))
        task = await notifying_task(client, alice, [hook(receiver, "/moving")])
        (delivery,) = await run_notifying(app, client, alice, task["id"])
        (done,) = (await settled(app, [delivery.id])).values()
        assert (done.status, done.attempts) == ("delivered", 2)
        attempts = await attempts_of(app, delivery.id)
        assert [(a.success, a.status_code) for a in attempts] == [(False, 307), (True, 200)]
        assert elsewhere.received == []


async def test_the_account_webhook_gets_every_notification_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    receiver.secret = await webhook_secret(client, alice)
    account = receiver.url_for("/account")
    put = await client.put("/api/v1/webhooks/config", json={"url": account}, headers=alice.headers)
    assert put.status_code == 200, put.text
    assert put.json()["url"] == account
    own = await notifying_task(client, alice, [hook(receiver, "/own")], name="Own channel")
    same = await notifying_task(client, alice, [hook(receiver, "/account")], name="Same URL")
    bare = await notifying_task(client, alice, [], name="No channels")

    queued = [
        d for t in (own, same, bare) for d in await run_notifying(app, client, alice, t["id"])
    ]
    done = await settled(app, [d.id for d in queued])
    assert {d.status for d in done.values()} == {"delivered"}
    accepted = await receiver.wait_for(4)
    await asyncio.sleep(0.2)  # and nothing more
    assert len(receiver.received) == 4
    assert all(r.verified for r in accepted)
    by_path: dict[str, list[str]] = {}
    for r in accepted:
        by_path.setdefault(r.path, []).append(r.event["data"]["task"]["name"])
    assert sorted(by_path["/account"]) == ["No channels", "Own channel", "Same URL"]
    assert by_path["/own"] == ["Own channel"]
    assert len({r.webhook_id for r in accepted}) == 4
    assert {r.webhook_id for r in accepted} == {str(d.id) for d in queued}

    # Turned off, the account webhook gets nothing more; the task channels still do.
    off = await client.put(
        "/api/v1/webhooks/config", json={"enabled": False}, headers=alice.headers
    )
    assert off.json() == {**put.json(), "enabled": False}
    queued = await run_notifying(app, client, alice, own["id"])
    assert [d.channel["url"] for d in queued] == [receiver.url_for("/own")]
    assert await run_notifying(app, client, alice, bare["id"]) == []


@pytest.mark.parametrize("run_scheduler", [False])
async def test_retries_after_a_rotation_are_signed_with_the_new_secret(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    dispatcher: Dispatcher = app.state.torale.dispatcher
    old = await webhook_secret(client, alice)
    receiver.secret = old
    receiver.fail_next(1, 500)
    task = await notifying_task(client, alice, [hook(receiver, "/rotating")])
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    (outgoing,) = await dispatcher.claim(limit=5, now=datetime.now(UTC))
    assert not (await dispatcher.deliver(outgoing)).ok

    rotated = await client.post("/api/v1/webhooks/config/rotate-secret", headers=alice.headers)
    new = rotated.json()["secret"]
    assert new != old
    new = await webhook_secret(client, alice)  # (rotated again only if unusable: see conftest)
    receiver.secret = new
    (retry,) = await dispatcher.claim(limit=5, now=datetime.now(UTC) + timedelta(seconds=5))
    assert retry.id == delivery.id
    assert (await dispatcher.deliver(retry)).ok

    before, after = receiver.received
    assert before.webhook_id == after.webhook_id == str(delivery.id)
    assert verifies(old, before.body, before.headers)
    assert not verifies(new, before.body, before.headers)
    assert verifies(new, after.body, after.headers)
    assert not verifies(old, after.body, after.headers)
    assert after.status == 200


@pytest.mark.parametrize("run_scheduler", [False])
async def test_a_task_deleted_while_its_notification_is_sent(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    """The delivery goes with the task (cascade); the send in flight must end quietly, not
    with an error out of the dispatcher when it records the attempt."""
    dispatcher: Dispatcher = app.state.torale.dispatcher
    receiver.secret = await webhook_secret(client, alice)
    task = await notifying_task(client, alice, [hook(receiver, "/deleted")])
    await run_notifying(app, client, alice, task["id"])
    (outgoing,) = await dispatcher.claim(limit=5, now=datetime.now(UTC))
    deleted = await client.delete(f"/api/v1/tasks/{task['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    try:
        result = await dispatcher.deliver(outgoing)
    except Exception as exc:
        pytest.fail(f"deliver() raised {type(exc).__name__}: {exc}")
    assert result.ok  # it was sent before the row was found gone
    assert await deliveries_of(app) == []
    assert (await attempts_api(client, alice))["total"] == 0
