"""Drill: a webhook receiver that is slow (beyond the timeout) and flapping (down, up, down…).

Two API processes' dispatchers (two apps on one PostgreSQL database, as `torale serve` replicas
or workers share it) send the notifications of several runs to a receiver that verifies every
signature and misbehaves: some answers come after Torale's timeout (the receiver accepted, Torale
never heard), some are 5xx, and meanwhile the receiver goes down and comes back several times.
The README: a failed delivery is retried; "a delivery is never sent twice, except that a send cut
off … is sent again with the same `webhook-id`, so receivers should ignore ids they have seen".
So, once it settles:

* every delivery is delivered, with exactly one successful attempt recorded (its last);
* the receiver saw every id, signed, with the same body on every attempt;
* an id was accepted more than once only as a retry of attempts Torale never got an answer to
  (timed out or cut off), and no request arrived that Torale did not record as an attempt —
  so the two dispatchers never sent one delivery at the same time;
* nothing is sent after a delivery is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fakes import Answer, FakeOpenAI, FakeSearxng, FakeWeb, WebhookReceiver, sequence
from tests.fixtures.drills import eventually
from tests.fixtures.engine import (  # noqa: F401 - the engine's local fakes, as fixtures here
    MET,
    _fresh_fakes,
    fake_model,
    fake_search,
    fake_web,
    page,
)
from tests.fixtures.lifespan import lifespan
from tests.fixtures.notify import (
    attempts_api,
    attempts_of,
    deliveries_of,
    notifying_task,
    run_notifying,
    settled,
    webhook_secret,
)
from tests.fixtures.users import ApiUser
from torale.app import create_app
from torale.config import Settings
from torale.db.models import Delivery

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),  # two processes
]

TIMEOUT = 0.4  # TORALE_WEBHOOK_TIMEOUT_SECONDS
SLOW = TIMEOUT * 2.5  # an answer this late is one Torale never hears
RETRIES = 40  # of 0.1 s each: far more than the flapping can use up
TASKS = 4
RUNS = 2  # per task: TASKS * RUNS deliveries
FLAPS = 4  # times the receiver goes down (0.4 s) and comes back (0.6 s)
TIMED_OUT = "the receiver did not answer in time"
UNREACHABLE = "could not reach the receiver"
REFUSED = "could not reach the receiver (ConnectError)"  # never arrived


@pytest.fixture
def run_scheduler() -> bool:
    return True  # the app's dispatcher sends in the background, as in production


@pytest.fixture
def settings_overrides(fake_model: FakeOpenAI, fake_search: FakeSearxng) -> dict[str, Any]:
    return {
        "model": "fake-model",
        "openai_base_url": fake_model.url + "/v1",
        "search_provider": "searxng",
        "searxng_url": fake_search.url,
        "allowed_networks": "127.0.0.1/32",
        "allow_http_webhooks": True,
        "provider_retries": 0,
        "run_timeout_seconds": 15,
        "webhook_timeout_seconds": TIMEOUT,
        "delivery_retry_delays": ",".join(["0.1"] * RETRIES),
        "scheduler_poll_seconds": 0.05,
    }


@pytest.fixture
def newsroom(fake_web: FakeWeb, fake_search: FakeSearxng, fake_model: FakeOpenAI) -> str:
    fake_web.set_page("/newsroom", page("Apple announced the iPhone 18 for September 9."))
    url = fake_web.url + "/newsroom"
    fake_search.set_results(None, [(url, "Apple Newsroom", "iPhone news")])
    fake_model.script = sequence(MET)
    return url


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as fake:
        yield fake


@pytest.fixture
async def second_dispatcher(app: FastAPI, settings: Settings) -> AsyncIterator[FastAPI]:
    """Another API process on the same database: its dispatcher sends too."""
    other = create_app(settings)
    async with lifespan(other):
        yield other


async def flap(receiver: WebhookReceiver) -> None:
    for _ in range(FLAPS):
        await asyncio.sleep(0.6)
        await asyncio.to_thread(receiver.stop)
        await asyncio.sleep(0.4)
        await asyncio.to_thread(receiver.restart)


async def test_a_slow_and_flapping_receiver_gets_every_delivery_without_duplicates(
    app: FastAPI,
    second_dispatcher: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    receiver: WebhookReceiver,
    newsroom: str,
) -> None:
    receiver.secret = await webhook_secret(client, alice)
    # Slow beyond the timeout (accepted, unheard), server errors, slow within it, in a mix.
    receiver.answer_next(
        Answer(delay=SLOW),
        Answer(status=503),
        Answer(delay=SLOW),
        Answer(delay=TIMEOUT / 4),
        Answer(status=500),
        Answer(delay=SLOW),
        Answer(status=502),
        Answer(delay=SLOW),
        Answer(delay=SLOW),
        Answer(status=503),
        Answer(delay=SLOW),
    )
    tasks = [
        await notifying_task(
            client, alice, [{"type": "webhook", "url": receiver.url_for(f"/t{i}")}]
        )
        for i in range(TASKS)
    ]
    flapping = asyncio.create_task(flap(receiver))
    try:
        queued: list[Delivery] = []
        for _ in range(RUNS):
            for task in tasks:
                queued += await run_notifying(app, client, alice, task["id"])
        ids = {str(d.id) for d in queued}
        assert len(ids) == TASKS * RUNS
        await flapping
    finally:
        flapping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flapping
        if not receiver.server.running:
            receiver.restart()
    done = await settled(app, [d.id for d in queued], timeout=30)
    await asyncio.sleep(SLOW + 0.5)  # answers still on their way, and anything sent late

    problems: list[str] = []
    requests = receiver.requests
    received = receiver.received
    for delivery in done.values():
        key = str(delivery.id)
        attempts = await attempts_of(app, delivery.id)
        outcome = [(a.success, a.status_code, a.error) for a in attempts]
        if delivery.status != "delivered":
            problems.append(f"{key} ended {delivery.status}: {outcome}")
            continue
        if [a.success for a in attempts] != [False] * (len(attempts) - 1) + [True]:
            problems.append(f"{key}: not exactly one success, last: {outcome}")
        if delivery.attempts != len(attempts):
            problems.append(f"{key}: {delivery.attempts} attempts counted, {len(attempts)} kept")
        arrived = [r for r in requests if r.headers.get("webhook-id") == key]
        if not arrived:
            problems.append(f"{key}: never reached the receiver")
            continue
        if len(arrived) > len(attempts):
            problems.append(f"{key}: {len(arrived)} requests for {len(attempts)} attempts")
        if len({r.body for r in arrived}) != 1:
            problems.append(f"{key}: the body changed between attempts")
        if any(r.json()["id"] != key for r in arrived):
            problems.append(f"{key}: an event id differs from its webhook-id")
        answered = [r for r in received if r.webhook_id == key]
        if any(not r.verified for r in answered):
            problems.append(f"{key}: a request did not verify: {answered[0].verify_error}")
        accepted = [r for r in answered if r.accepted]
        # Attempts that may have reached the receiver but whose answer Torale never got.
        unheard = [
            a
            for a in attempts
            if (a.error or "").startswith((TIMED_OUT, UNREACHABLE)) and a.error != REFUSED
        ]
        if not accepted:
            problems.append(f"{key}: the receiver never accepted it")
        elif len(accepted) - 1 > len(unheard):
            problems.append(
                f"{key}: accepted {len(accepted)} times, but only {len(unheard)} attempts were "
                f"unanswered: {outcome}"
            )
        completed = delivery.completed_at.timestamp() if delivery.completed_at else 0.0
        late = [r for r in arrived if r.at > completed]
        if late:
            problems.append(f"{key}: {len(late)} request(s) after it was delivered")
    strays = {r.headers.get("webhook-id") for r in requests} - {str(d.id) for d in done.values()}
    if strays:
        problems.append(f"requests for ids no delivery has: {strays}")
    assert not problems, "\n".join(problems)

    # The drill did what it says: timeouts, errors and the receiver's absences all happened.
    errors = [
        a.error or "" for d in done.values() for a in await attempts_of(app, d.id) if not a.success
    ]
    assert any(e.startswith(TIMED_OUT) for e in errors), errors
    assert any(e == REFUSED for e in errors), errors
    assert any("answered HTTP 5" in e for e in errors), errors

    # The listing agrees: one successful attempt per delivery.
    items: list[dict[str, Any]] = []
    for number in range(1, 100):
        listing = await attempts_api(client, alice, limit=100, page=number)
        items += listing["items"]
        if len(items) >= listing["total"] or not listing["items"]:
            break
    assert len(items) == sum(d.attempts for d in done.values())
    assert sorted(i["delivery_id"] for i in items if i["success"]) == sorted(
        str(d.id) for d in done.values()
    )

    async def quiet() -> bool | None:
        return True if len(receiver.requests) == len(requests) else None

    await eventually(quiet, seconds=1, what="no request after settling")
    assert {d.status for d in await deliveries_of(app)} == {"delivered"}
