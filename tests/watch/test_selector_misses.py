"""A selector that stops matching fails each run; after TORALE_SELECTOR_MISSES_TO_NOTIFY runs in a
row the owner is told once, through the task's channels (the outbox), which URL and selector
stopped matching — and not again until it has matched again, or the urls changed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fakes import FakeWeb
from tests.fixtures.engine import run_now
from tests.fixtures.users import ApiUser, set_user_active
from tests.fixtures.watch import TASKS, create, shop, task_payloads
from torale.engine.run import run_execution
from torale.statuses import Trigger

REDESIGNED = "<html><body><main><p>Our new shop is coming soon</p></main></body></html>"


async def runs(client: httpx.AsyncClient, user: ApiUser, task_id: str, n: int) -> list[Any]:
    return [await run_now(client, user, task_id) for _ in range(n)]


def missed_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == "task.selector_missed"]


async def test_the_owner_is_told_once_after_three_misses_in_a_row(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    url = fake_web.url + "/p"
    task = await create(client, alice, urls=[{"url": url, "selector": ".price"}, url])
    assert (await run_now(client, alice, task["id"]))["status"] == "success"

    fake_web.set_page("/p", REDESIGNED)
    first, second, third, fourth, fifth = await runs(client, alice, task["id"], 5)
    assert {r["status"] for r in (first, second, third, fourth, fifth)} == {"failed"}
    assert "CSS selector .price matched nothing" in third["error_message"]
    events = await task_payloads(app, task["id"])
    [event] = missed_events(events)
    assert len(events) == 1  # one notice for five misses: nothing else was sent
    assert event["data"]["execution"]["id"] == third["id"]
    assert event["data"]["missed"] == [{"url": url, "selector": ".price"}]
    assert event["data"]["runs"] == 3
    assert f"{url} [.price]" in third["notification"]
    assert "last 3 runs" in third["notification"]
    assert (first["notification"], second["notification"], fourth["notification"]) == (
        None,
        None,
        None,
    )
    notified = await client.get(f"{TASKS}/{task['id']}/notifications", headers=alice.headers)
    assert [e["id"] for e in notified.json()["items"]] == [third["id"]]

    # It matches again: the count starts over, and the next streak of misses is told again.
    fake_web.set_page("/p", shop("$59.00"))
    assert (await run_now(client, alice, task["id"]))["status"] == "success"
    fake_web.set_page("/p", REDESIGNED)
    again = await runs(client, alice, task["id"], 3)
    assert len(missed_events(await task_payloads(app, task["id"]))) == 2
    assert again[2]["notification"] is not None


async def test_new_urls_start_the_count_again(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", REDESIGNED)
    url = fake_web.url + "/p"
    task = await create(client, alice, urls=[{"url": url, "selector": ".price"}])
    await runs(client, alice, task["id"], 2)
    changed = await client.patch(
        f"{TASKS}/{task['id']}",
        json={"urls": [{"url": url, "selector": "#offer"}]},
        headers=alice.headers,
    )
    assert changed.status_code == 200, changed.text
    await runs(client, alice, task["id"], 2)
    assert missed_events(await task_payloads(app, task["id"])) == []  # 2, not 4, in a row
    [last] = await runs(client, alice, task["id"], 1)
    [event] = missed_events(await task_payloads(app, task["id"]))
    assert event["data"]["missed"] == [{"url": url, "selector": "#offer"}]
    assert event["data"]["execution"]["id"] == last["id"]


async def test_an_account_deactivated_during_the_third_miss_is_not_told(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", REDESIGNED)
    task = await create(client, alice, urls=[{"url": fake_web.url + "/p", "selector": ".price"}])
    await runs(client, alice, task["id"], 2)
    fake_web.slow("/p", 1.0)
    third = asyncio.create_task(
        run_execution(app.state.torale.run_engine, uuid.UUID(task["id"]), Trigger.MANUAL)
    )
    await asyncio.sleep(0.3)  # the run is reading the page
    await set_user_active(app, alice.id, False)
    execution_id = await third
    assert execution_id is not None
    listing = await client.get(f"{TASKS}/{task['id']}/executions", headers=alice.headers)
    assert listing.status_code == 403  # deactivated; the record is read from the database
    assert await task_payloads(app, task["id"]) == []


@pytest.mark.parametrize("extra_settings", [{"selector_misses_to_notify": 0}])
async def test_zero_turns_the_notice_off(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", REDESIGNED)
    task = await create(client, alice, urls=[{"url": fake_web.url + "/p", "selector": ".price"}])
    await runs(client, alice, task["id"], 4)
    assert await task_payloads(app, task["id"]) == []
