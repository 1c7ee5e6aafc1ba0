"""watch.service.changed_runs on both databases: which runs read something different from the
run before them that kept sources (failed runs keep none and are stepped over), from a given
time on, and only within the task asked about."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI

from tests.fakes import FakeWeb
from tests.fixtures.engine import run_now
from tests.fixtures.users import ApiUser
from torale.watch import service

TASKS = "/api/v1/tasks"


def page(price: str) -> str:
    return f'<html><body><div id="offer"><p>{price}</p></div><p>noise</p></body></html>'


async def _changed(app: FastAPI, task_id: str, since: str) -> dict[str, str]:
    async with app.state.torale.sessions() as session:
        found = await service.changed_runs(
            session, task_id=uuid.UUID(task_id), since=datetime.fromisoformat(since)
        )
    return {str(later): str(earlier) for later, earlier in found.items()}


async def test_changed_runs_pair_each_new_reading_with_the_run_before(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", page("$59.00"))
    body = {"urls": [{"url": fake_web.url + "/p", "selector": "#offer"}]}
    made = await client.post(TASKS, json=body, headers=alice.headers)
    task = made.json()
    baseline = await run_now(client, alice, task["id"])
    same = await run_now(client, alice, task["id"])
    fake_web.set_page("/p", page("$49.00"))
    cheaper = await run_now(client, alice, task["id"])
    fake_web.set_page("/p", "<html><body><p>Redesigned</p></body></html>")
    failed = await run_now(client, alice, task["id"])
    assert failed["status"] == "failed"  # the selector matched nothing: no sources kept
    fake_web.set_page("/p", page("$45.00"))
    cheapest = await run_now(client, alice, task["id"])

    everything = await _changed(app, task["id"], baseline["created_at"])
    assert everything == {cheaper["id"]: same["id"], cheapest["id"]: cheaper["id"]}
    # From a later run on, the run before it is still found (outside the range asked for).
    assert await _changed(app, task["id"], cheapest["created_at"]) == {
        cheapest["id"]: cheaper["id"]
    }
    later = datetime.fromisoformat(cheapest["created_at"]) + timedelta(seconds=1)
    assert await _changed(app, task["id"], later.isoformat()) == {}

    other = (await client.post(TASKS, json=body, headers=alice.headers)).json()
    await run_now(client, alice, other["id"])
    assert await _changed(app, other["id"], baseline["created_at"]) == {}
    assert await _changed(app, task["id"], baseline["created_at"]) == everything
