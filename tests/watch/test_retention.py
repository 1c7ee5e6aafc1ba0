"""Snapshot retention: old runs' texts go, texts a newer run still refers to stay, each task's
latest run (the baseline of change detection) and the latest text of each URL target stay
whatever their age, the diff API says clearly when a run's snapshots are gone, and pruning
runs where background work runs (the API with its scheduler, every worker), not in an
API-only process."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fakes import FakeWeb
from tests.fixtures.engine import run_now
from tests.fixtures.users import ApiUser
from tests.fixtures.watch import TASKS, age_runs, create, shop, stored_hashes
from torale.config import Settings
from torale.db.statements import try_exclusive
from torale.scheduling import worker
from torale.watch import retention
from torale.watch.retention import prune_snapshots
from torale.watch.snapshots import content_hash

RETENTION = timedelta(days=30)


async def sources(client: httpx.AsyncClient, user: ApiUser, task_id: str, run: str) -> list[Any]:
    path = f"{TASKS}/{task_id}/executions/{run}/sources"
    response = await client.get(path, headers=user.headers)
    assert response.status_code == 200, response.text
    found: list[Any] = response.json()
    return found


async def prune(app: FastAPI) -> retention.PruneReport:
    state = app.state.torale
    return await prune_snapshots(state.sessions, state.write_lock, retention=RETENTION)


async def test_old_texts_go_shared_and_latest_ones_stay(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    fake_web.set_page("/q", "<html><body><p id='note'>Made in Italy</p></body></html>")
    shop_url, note_url = fake_web.url + "/p", fake_web.url + "/q"
    task = await create(
        client,
        alice,
        urls=[{"url": shop_url, "selector": ".price"}, {"url": note_url, "selector": "#note"}],
        notify_behavior="always",
    )
    runs = []
    for price in ("$59.00", "$49.00", "$39.00"):
        fake_web.set_page("/p", shop(price))
        runs.append((await run_now(client, alice, task["id"]))["id"])
    # A task that stopped running long ago: its only run is its baseline.
    fake_web.set_page("/u", shop("$10.00"))
    idle = await create(client, alice, urls=[{"url": fake_web.url + "/u", "selector": ".price"}])
    idle_run = (await run_now(client, alice, idle["id"]))["id"]

    await age_runs(app, runs[:2], days=40)
    await age_runs(app, [idle_run], days=400)
    before = await stored_hashes(app)
    report = await prune(app)

    assert report.runs == 2
    after = await stored_hashes(app)
    assert before - after == {content_hash("$59.00"), content_hash("$49.00")}
    # The note was last read by the old runs too, but the newest run still refers to it.
    assert content_hash("Made in Italy") in after
    assert content_hash("$39.00") in after
    assert content_hash("$10.00") in after  # the idle task's baseline, 400 days old
    assert await sources(client, alice, task["id"], runs[0]) == []
    assert len(await sources(client, alice, task["id"], runs[2])) == 2
    assert len(await sources(client, alice, idle["id"], idle_run)) == 1

    # The diff API says why a pruned run cannot be compared, at the parameter naming it.
    diff = f"{TASKS}/{task['id']}/diff"
    pruned = await client.get(diff, params={"from": runs[0], "to": runs[2]}, headers=alice.headers)
    assert pruned.status_code == 422, pruned.text
    [error] = pruned.json()["detail"]
    assert error["loc"] == ["query", "from"]
    assert error["type"] == "snapshots_pruned"
    assert "TORALE_SNAPSHOT_RETENTION_DAYS" in error["msg"]
    backwards = await client.get(
        diff, params={"from": runs[2], "to": runs[1]}, headers=alice.headers
    )
    assert backwards.status_code == 422
    assert backwards.json()["detail"][0]["loc"] == ["query", "to"]
    assert (await client.get(diff, headers=alice.headers)).status_code == 422  # one run left

    # Change detection still compares the idle task's next run with its old baseline.
    fake_web.set_page("/u", shop("$12.00"))
    changed = await run_now(client, alice, idle["id"])
    assert changed["condition_met"] is True
    assert "+$12.00" in changed["notification"]
    again = await prune(app)
    assert again.runs == 1  # now the 400-day-old run is not the latest any more
    assert content_hash("$10.00") not in await stored_hashes(app)


async def test_the_latest_text_of_each_target_stays(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    # A model task reads what it can: when a page fails, the run still succeeds without it.
    fake_web.set_page("/a", shop("$59.00"))
    fake_web.set_page("/b", shop("$20.00"))
    task = await create(
        client,
        alice,
        search_query="Espresso machine price",
        urls=[fake_web.url + "/a", fake_web.url + "/b"],
        config={"search_provider": "none"},
    )
    first = await run_now(client, alice, task["id"])
    assert first["status"] == "success", first
    fake_web.remove("/b")
    second = await run_now(client, alice, task["id"])
    assert second["status"] == "success", second
    assert len(await sources(client, alice, task["id"], second["id"])) == 1
    await age_runs(app, [first["id"]], days=40)
    assert (await prune(app)).runs == 0  # the only run that read /b keeps its sources
    assert len(await sources(client, alice, task["id"], first["id"])) == 2


async def test_a_pass_skips_while_another_process_prunes(app: FastAPI) -> None:
    state = app.state.torale
    if state.settings.is_sqlite:
        assert not (await prune(app)).skipped  # one writer at a time: nothing to coordinate
        return
    async with state.sessions() as other:  # another process, in the middle of a pass
        assert await try_exclusive(other, retention.LOCK_ID)
        assert (await prune(app)).skipped
        await other.rollback()
    assert not (await prune(app)).skipped


@pytest.fixture
def quick_pruning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "FIRST_PASS_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(retention, "EVERY_SECONDS", 0.05)


@pytest.mark.usefixtures("quick_pruning")
@pytest.mark.parametrize("run_scheduler", [True])
async def test_the_api_with_its_scheduler_prunes(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    task = await create(client, alice, urls=[{"url": fake_web.url + "/p", "selector": ".price"}])
    old = (await run_now(client, alice, task["id"]))["id"]
    fake_web.set_page("/p", shop("$49.00"))
    await run_now(client, alice, task["id"])
    assert app.state.torale.pruner.running
    await age_runs(app, [old], days=40)
    for _ in range(100):
        if content_hash("$59.00") not in await stored_hashes(app):
            break
        await asyncio.sleep(0.05)
    assert content_hash("$59.00") not in await stored_hashes(app)


@pytest.mark.usefixtures("quick_pruning")
async def test_an_api_only_process_does_not_prune(app: FastAPI) -> None:
    await asyncio.sleep(0.1)
    assert not app.state.torale.pruner.running  # `serve --no-scheduler`: the workers do it


@pytest.mark.usefixtures("quick_pruning")
@pytest.mark.parametrize("extra_settings", [{"snapshot_retention_days": 0}])
@pytest.mark.parametrize("run_scheduler", [True])
async def test_retention_zero_keeps_everything(app: FastAPI) -> None:
    await asyncio.sleep(0.1)
    assert not app.state.torale.pruner.running


@pytest.mark.usefixtures("quick_pruning")
async def test_a_worker_prunes(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    task = await create(client, alice, urls=[{"url": fake_web.url + "/p", "selector": ".price"}])
    old = (await run_now(client, alice, task["id"]))["id"]
    fake_web.set_page("/p", shop("$49.00"))
    await run_now(client, alice, task["id"])
    await age_runs(app, [old], days=40)

    monkeypatch.setattr(worker, "_ENGINE_IMPORTS", ())
    stop = asyncio.Event()

    async def until_pruned() -> None:
        for _ in range(200):
            if content_hash("$59.00") not in await stored_hashes(app):
                break
            await asyncio.sleep(0.05)
        stop.set()

    await asyncio.gather(worker.run_worker(settings, stop), until_pruned())
    assert content_hash("$59.00") not in await stored_hashes(app)
