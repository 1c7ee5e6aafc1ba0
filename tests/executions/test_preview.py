"""Previews of watch tasks: a `change` preview compares with the task's latest stored snapshot
(or says there is nothing to compare with, for a new task), a `rules` preview evaluates the
rules (drop_pct against the task's last number) and says which conditions held, and nothing
is saved."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.fakes import FakeWeb
from tests.fixtures.engine import run_now
from tests.fixtures.users import ApiUser
from tests.fixtures.watch import create, shop
from torale.db.models import Delivery, Execution, ExecutionSource, Page, SnapshotContent, Task
from torale.watch.judge import NOTHING_TO_COMPARE

PREVIEW = "/api/v1/tasks/preview"
RULES = {
    "match": "all",
    "conditions": [
        {"kind": "number", "op": "<", "value": 50},
        {"kind": "number", "op": "drop_pct", "value": 10},
        {"kind": "text", "op": "contains", "value": "In stock"},
    ],
}


async def preview(client: httpx.AsyncClient, user: ApiUser, **body: Any) -> dict[str, Any]:
    response = await client.post(PREVIEW, json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def stored(app: FastAPI) -> dict[str, Any]:
    """Everything a run would write."""
    async with app.state.torale.sessions() as session:
        counts = {
            table.__name__: await session.scalar(select(func.count()).select_from(table))
            for table in (Execution, ExecutionSource, SnapshotContent, Page, Delivery)
        }
        tasks = await session.execute(
            select(Task.id, Task.last_known_state, Task.condition_met, Task.updated_at)
        )
        return {"counts": counts, "tasks": sorted(map(tuple, tasks), key=str)}


async def test_a_change_preview_compares_with_the_tasks_latest_snapshot(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    target = {"url": fake_web.url + "/p", "selector": "#offer"}

    new = await preview(client, alice, urls=[target])
    assert new["condition_met"] is False
    assert new["answer"] == NOTHING_TO_COMPARE
    assert new["compared_with"] is None
    assert new["diff"] is None

    task = await create(client, alice, urls=[target], notify_behavior="always")
    run = await run_now(client, alice, task["id"])
    same = await preview(client, alice, urls=[target], task_id=task["id"])
    assert same["condition_met"] is False
    assert same["answer"] == "No change in the watched content."
    assert same["compared_with"] == run["id"]
    assert same["diff"] is None

    fake_web.set_page("/p", shop("$49.00"))
    before = await stored(app)
    changed = await preview(client, alice, urls=[target], task_id=task["id"])
    assert changed["condition_met"] is True
    assert changed["compared_with"] == run["id"]
    assert "-$59.00" in changed["diff"]
    assert "+$49.00" in changed["diff"]
    assert changed["conditions"] == []
    assert await stored(app) == before  # no execution, snapshot, page cache or task change

    # The task's next real run sees the change the preview showed (the preview took nothing).
    after = await run_now(client, alice, task["id"])
    assert after["condition_met"] is True

    # An edited selector has no stored text yet: nothing to compare with.
    other = await preview(
        client, alice, urls=[{**target, "selector": ".price"}], task_id=task["id"]
    )
    assert other["answer"] == NOTHING_TO_COMPARE
    assert other["compared_with"] is None


async def test_a_rules_preview_says_which_conditions_held(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    target = {"url": fake_web.url + "/p", "selector": "#offer"}

    fresh = await preview(client, alice, urls=[target], rules=RULES)
    assert fresh["condition_met"] is False
    assert [(c["condition"]["op"], c["held"]) for c in fresh["conditions"]] == [
        ("<", False),
        ("drop_pct", False),  # nothing to compare with
        ("contains", True),
    ]
    assert fresh["conditions"][0]["detail"] == "number < 50 (it is 59)"
    assert fresh["conditions"][0]["url"] == target["url"]
    assert fresh["conditions"][0]["selector"] == "#offer"

    task = await create(client, alice, urls=[target], rules=RULES, notify_behavior="always")
    await run_now(client, alice, task["id"])
    fake_web.set_page("/p", shop("$49.00"))
    before = await stored(app)
    dropped = await preview(client, alice, urls=[target], rules=RULES, task_id=task["id"])
    assert dropped["condition_met"] is True
    assert [c["held"] for c in dropped["conditions"]] == [True, True, True]
    assert dropped["conditions"][1]["detail"] == ("number dropped by at least 10% (was 59, now 49)")
    assert "+$49.00" in dropped["diff"]
    assert await stored(app) == before

    # Edited rules are previewed against the same last number.
    edited = {"conditions": [{"kind": "number", "op": "drop_pct", "value": 20}]}
    smaller = await preview(client, alice, urls=[target], rules=edited, task_id=task["id"])
    assert smaller["condition_met"] is False
    assert smaller["conditions"][0]["held"] is False


async def test_a_preview_of_someone_elses_task_is_a_404(
    client: httpx.AsyncClient, alice: ApiUser, bob: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    urls = [{"url": fake_web.url + "/p", "selector": "#offer"}]
    task = await create(client, alice, urls=urls)
    response = await client.post(
        PREVIEW, json={"urls": urls, "task_id": task["id"]}, headers=bob.headers
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "Task not found"}
