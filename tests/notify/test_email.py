"""Email deliveries to a real SMTP server (aiosmtpd on 127.0.0.1, with AUTH)."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from tests.fakes import FakeOpenAI, FakeSearxng, FakeWeb, verdict_rules
from tests.fixtures.engine import MET, NOT_MET, page, run_now
from tests.fixtures.notify import (
    ANNOUNCED,
    SmtpServer,
    attempts_api,
    attempts_of,
    deliveries_of,
    eventually,
    notifying_task,
    run_notifying,
    settled,
)
from tests.fixtures.users import ApiUser
from tests.fixtures.watch import create, shop
from torale.db.models import Delivery, DeliveryAttempt
from torale.notify.dispatcher import Dispatcher

# The test server takes AUTH over plain text (there is no certificate on 127.0.0.1).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USERNAME, PASSWORD = "torale@ops", "p@ss w/rd"
SENDER = "alerts@torale.test"


@pytest.fixture
def run_scheduler() -> bool:
    return True


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(username=USERNAME, password=PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def email_limit() -> int:
    return 20


@pytest.fixture
def extra_settings(smtp: SmtpServer, email_limit: int) -> dict[str, Any]:
    return {
        # user and password percent-encoded, as in any URL
        "smtp_url": f"smtp://torale%40ops:p%40ss%20w%2Frd@127.0.0.1:{smtp.port}?starttls=auto",
        "email_from": f"Torale Alerts <{SENDER}>",
        "email_max_per_hour": email_limit,
    }


def email(address: str) -> dict[str, Any]:
    return {"type": "email", "address": address}


ANSWER = 'iPhone 18 ships on <b>September 9</b> & "pre-orders" open <script>alert(1)</script>'
TITLE = 'Apple <Newsroom> & "Friends"'


async def test_the_email_has_a_text_and_an_html_part(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    smtp: SmtpServer,
    fake_web: FakeWeb,
    fake_search: FakeSearxng,
    fake_model: FakeOpenAI,
) -> None:
    # The page and the model both put markup-like text into the notification.
    fake_web.set_page("/newsroom", page(ANNOUNCED, title=TITLE))
    url = fake_web.url + "/newsroom"
    fake_search.set_results(None, [(url, TITLE, "iPhone news")])
    fake_model.script = verdict_rules([(ANNOUNCED, {**MET, "answer": ANSWER})], default=NOT_MET)
    task = await notifying_task(
        client, alice, [email("alice@example.com")], name="iPhone <watch> & co"
    )
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    (done,) = (await settled(app, [delivery.id])).values()
    assert (done.status, done.attempts) == ("delivered", 1)
    (mail,) = await smtp.wait_for(1)

    assert smtp.logins == [(USERNAME, PASSWORD)]
    assert mail.mail_from == SENDER
    assert mail.rcpt_tos == ["alice@example.com"]
    message = mail.message
    assert message["Subject"] == "Torale: iPhone <watch> & co"
    assert message["To"] == "alice@example.com"
    assert SENDER in message["From"]
    assert message.get_content_type() == "multipart/alternative"

    execution = (
        await client.get(f"/api/v1/tasks/{task['id']}/executions", headers=alice.headers)
    ).json()["items"][0]
    (source,) = execution["grounding_sources"]
    title = source["title"]
    assert "<Newsroom>" in title  # the page's own words, markup characters and all

    text = mail.part("text/plain")
    assert f"iPhone <watch> & co: {ANSWER}" in text  # plain text is not escaped
    assert "What changed: The condition is met." in text
    assert "Sources:" in text
    assert f"- {title} ({url})" in text

    body = mail.part("text/html")
    assert "<script>" not in body
    assert "<Newsroom>" not in body
    assert "<watch>" not in body
    assert html.escape(ANSWER) in body
    assert html.escape(title) in body
    assert html.escape("Torale: iPhone <watch> & co") in body
    assert f'href="{html.escape(url, quote=True)}"' in body
    assert "What changed:" in body
    assert "The condition is met." in body

    (item,) = (await attempts_api(client, alice))["items"]
    assert (item["channel_type"], item["target"], item["success"]) == (
        "email",
        "alice@example.com",
        True,
    )


async def test_a_change_email_carries_the_diff_in_both_parts(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, smtp: SmtpServer, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", shop("$59.00 <b>&</b>"))
    task = await create(
        client,
        alice,
        urls=[{"url": fake_web.url + "/p", "selector": "#offer"}],
        notifications=[email("alice@example.com")],
        notify_behavior="always",
    )
    assert (await run_now(client, alice, task["id"]))["notification"] is None  # the baseline
    fake_web.set_page("/p", shop("$49.00 <b>&</b>"))
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    assert "+$49.00 &" in delivery.payload["data"]["diff"]
    await settled(app, [delivery.id])
    (mail,) = await smtp.wait_for(1)
    text = mail.part("text/plain")
    assert "Diff:" in text
    assert "-$59.00 &" in text
    assert "+$49.00 &" in text
    body = mail.part("text/html")
    assert '<span style="color:#cf222e">-$59.00 &amp;</span>' in body
    assert '<span style="color:#1a7f37">+$49.00 &amp;</span>' in body


async def test_a_selector_that_stopped_matching_is_told_by_email(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, smtp: SmtpServer, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", "<html><body><p>Coming <soon></p></body></html>")
    url = fake_web.url + "/p"
    task = await create(
        client,
        alice,
        urls=[{"url": url, "selector": ".price"}],
        notifications=[email("alice@example.com")],
    )
    for _ in range(3):  # TORALE_SELECTOR_MISSES_TO_NOTIFY
        assert (await run_now(client, alice, task["id"]))["status"] == "failed"
    (delivery,) = await deliveries_of(app, task_id=task["id"])
    assert delivery.payload["event_type"] == "task.selector_missed"
    (done,) = (await settled(app, [delivery.id])).values()
    assert done.status == "delivered"
    (mail,) = await smtp.wait_for(1)
    assert f"- {url} [.price]" in mail.part("text/plain")
    body = mail.part("text/html")
    assert html.escape(f"- {url} [.price]") in body
    assert "could not be found in the last 3 runs" in body


async def test_a_task_name_with_a_line_break_still_gets_its_email(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    smtp: SmtpServer,
    newsroom: str,
) -> None:
    """Task names may hold line breaks (the API accepts them); an email subject cannot, so
    the name must be folded into one line rather than the delivery failing."""
    task = await notifying_task(client, alice, [email("alice@example.com")], name="Price\nwatch")
    assert task["name"] == "Price\nwatch"
    (delivery,) = await run_notifying(app, client, alice, task["id"])
    (done,) = (await settled(app, [delivery.id])).values()
    attempts = await attempts_of(app, delivery.id)
    assert (done.status, [a.error for a in attempts]) == ("delivered", [None])
    (mail,) = await smtp.wait_for(1)
    assert "\n" not in mail.message["Subject"]
    assert "Price" in mail.message["Subject"]
    assert "watch" in mail.message["Subject"]


ADDRESSES = [f"user{i}@example.com" for i in range(4)]


@pytest.mark.parametrize("run_scheduler", [False])
@pytest.mark.parametrize("email_limit", [2])
async def test_emails_over_the_hourly_limit_wait_and_are_not_attempts(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    smtp: SmtpServer,
    newsroom: str,
) -> None:
    state = app.state.torale
    dispatcher: Dispatcher = state.dispatcher
    task = await notifying_task(client, alice, [email(a) for a in ADDRESSES])
    queued = await run_notifying(app, client, alice, task["id"])
    assert len(queued) == 4

    now = datetime.now(UTC)
    # The limit is applied when claiming: two go out, two wait.
    claimed = await dispatcher.claim(limit=10, now=now)
    assert len(claimed) == 2
    results = [await dispatcher.deliver(outgoing) for outgoing in claimed]
    assert [r.ok for r in results] == [True, True]
    assert len(smtp.mails) == 2

    rows = {d.id: d for d in await deliveries_of(app, task_id=task["id"])}
    sent = [rows[o.id] for o in claimed]
    waiting = [d for d in rows.values() if d.id not in {o.id for o in claimed}]
    assert [(d.status, d.attempts) for d in sent] == [("delivered", 1)] * 2
    assert [(d.status, d.attempts, d.lease_expires_at) for d in waiting] == [
        ("pending", 0, None)
    ] * 2
    assert all(d.next_attempt_at > now + timedelta(minutes=5) for d in waiting)
    for d in waiting:
        assert await attempts_of(app, d.id) == []  # not an attempt
    assert (await attempts_api(client, alice))["total"] == 2
    assert await dispatcher.claim(limit=10, now=datetime.now(UTC)) == []  # not due yet

    # An hour later they go out (not dropped).
    async with state.sessions() as session:
        await session.execute(
            update(DeliveryAttempt).values(attempted_at=datetime.now(UTC) - timedelta(hours=2))
        )
        await session.execute(
            update(Delivery)
            .where(Delivery.status == "pending")
            .values(next_attempt_at=datetime.now(UTC))
        )
        await session.commit()
    later = await dispatcher.claim(limit=10, now=datetime.now(UTC))
    assert {o.id for o in later} == {d.id for d in waiting}
    assert [(await dispatcher.deliver(o)).ok for o in later] == [True, True]
    assert sorted(r for m in smtp.mails for r in m.rcpt_tos) == ADDRESSES
    done = await deliveries_of(app, task_id=task["id"])
    assert [(d.status, d.attempts) for d in done] == [("delivered", 1)] * 4


@pytest.mark.parametrize("email_limit", [2])
async def test_the_hourly_limit_holds_when_emails_are_sent_together(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    smtp: SmtpServer,
    newsroom: str,
) -> None:
    """The dispatcher sends up to 8 deliveries at once; four emails of one user queued by one
    run must still yield two sent and two postponed."""
    task = await notifying_task(client, alice, [email(a) for a in ADDRESSES])
    queued = await run_notifying(app, client, alice, task["id"])
    assert len(queued) == 4

    def quiet(rows: list[Delivery]) -> bool:
        soon = datetime.now(UTC) + timedelta(minutes=1)
        return all(
            d.status in ("delivered", "failed")
            or (d.status == "pending" and d.next_attempt_at > soon)
            for d in rows
        )

    async def probe() -> list[Delivery]:
        return await deliveries_of(app, task_id=task["id"])

    rows = await eventually(probe, quiet, what="every email sent or postponed")
    assert sorted(d.status for d in rows) == ["delivered", "delivered", "pending", "pending"]
    assert len(smtp.mails) == 2
