"""Tasks that read pages with a browser, through the API: `render` per task and per URL, the
rendered text through the same rules, fingerprint and cost saver as a plain page, screenshots
kept with the run's sources, hostile pages that reach nothing, and a 422 that names the setting
on a server without a browser."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.fakes import FakeOpenAI, FakeWeb, sequence
from tests.fakes.sink import Sink
from tests.fixtures import sdk_002
from tests.fixtures.browser import hostile_embeds, hostile_fetch, hostile_websocket, js_page
from tests.fixtures.engine import NOT_MET, run_now
from tests.fixtures.users import ApiUser
from torale.db.models import SnapshotContent
from torale.sdk import models as sdk_models

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

TASKS = "/api/v1/tasks"
STORY = ["The espresso machine is back in stock.", "It costs 499 euros."]
IN_STOCK = {"conditions": [{"kind": "text", "op": "contains", "value": "back in stock"}]}


@pytest.fixture
def extra_settings(chromium: str) -> dict[str, Any]:
    return {
        "browser_path": chromium,
        "fetch_timeout_seconds": 8,
        "run_timeout_seconds": 60,
    }


async def create(client: httpx.AsyncClient, user: ApiUser, **body: Any) -> dict[str, Any]:
    response = await client.post(TASKS, json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def task_id(task: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(task["id"])


async def sources(
    client: httpx.AsyncClient, user: ApiUser, task: dict[str, Any], execution: dict[str, Any]
) -> list[dict[str, Any]]:
    path = f"{TASKS}/{task['id']}/executions/{execution['id']}/sources"
    response = await client.get(path, headers=user.headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


async def test_render_browser_reads_what_javascript_writes_where_plain_reads_nothing(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/shop", js_page("Espresso machine", STORY))
    url = fake_web.url + "/shop"
    browser = await create(client, alice, urls=[{"url": url, "render": "browser"}], rules=IN_STOCK)
    plain = await create(client, alice, urls=[url], rules=IN_STOCK)
    assert browser["render"] == "plain"  # the task's; the target says browser
    assert browser["urls"] == [url]  # plain strings for clients that know only those
    assert browser["targets"] == [{"url": url, "selector": None, "render": "browser"}]
    assert plain["targets"] == [{"url": url, "selector": None, "render": None}]

    seen = await run_now(client, alice, browser["id"])
    assert seen["status"] == "success", seen
    assert seen["condition_met"] is True
    unseen = await run_now(client, alice, plain["id"])
    assert unseen["status"] == "success", unseen
    assert unseen["condition_met"] is False

    # Readers of the API keep working: the published 0.0.2 SDK and this one.
    body = (await client.get(f"{TASKS}/{browser['id']}", headers=alice.headers)).json()
    assert sdk_002.Task(**body).id == task_id(browser)
    assert sdk_models.Task.model_validate(body).targets[0].render == "browser"


async def test_a_task_renders_all_its_urls_and_keeps_screenshots_with_its_sources(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, bob: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/shop", js_page("Espresso machine", STORY))
    fake_web.set_page("/api", '{"price": 499}', content_type="application/json")
    task = await create(
        client,
        alice,
        urls=[fake_web.url + "/shop", {"url": fake_web.url + "/api", "render": "plain"}],
        render="browser",
        screenshot=True,
    )
    assert (task["render"], task["screenshot"]) == ("browser", True)
    first = await run_now(client, alice, task["id"])
    assert first["status"] == "success", first
    read = await sources(client, alice, task, first)
    assert [s["url"] for s in read] == [fake_web.url + "/shop", fake_web.url + "/api"]
    assert read[1]["screenshot"] is None  # read plainly: no screenshot
    path = read[0]["screenshot"]
    assert path == f"{TASKS}/{task['id']}/executions/{first['id']}/sources/0/screenshot"
    image = await client.get(path, headers=alice.headers)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert "private" in image.headers["cache-control"]

    # Not anyone else's; not a source without one.
    assert (await client.get(path, headers=bob.headers)).status_code == 404
    none = path.replace("/sources/0/", "/sources/1/")
    missing = await client.get(none, headers=alice.headers)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Screenshot not found"}

    # The same page again: its text and its (identical) screenshot are stored once.
    async with app.state.torale.sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(SnapshotContent))
    second = await run_now(client, alice, task["id"])
    assert second["status"] == "success", second
    async with app.state.torale.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(SnapshotContent)) == stored
    assert second["condition_met"] is False  # change mode: nothing changed


async def test_a_preview_renders_too(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/shop", js_page("Espresso machine", STORY))
    body = {"urls": [fake_web.url + "/shop"], "rules": IN_STOCK}
    plain = await client.post(f"{TASKS}/preview", json=body, headers=alice.headers)
    assert plain.status_code == 200, plain.text
    assert plain.json()["condition_met"] is False
    rendered = await client.post(
        f"{TASKS}/preview", json={**body, "render": "browser"}, headers=alice.headers
    )
    assert rendered.status_code == 200, rendered.text
    assert rendered.json()["condition_met"] is True


async def test_unchanged_rendered_pages_reuse_the_verdict(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb, fake_model: FakeOpenAI
) -> None:
    fake_web.set_page("/shop", js_page("Espresso machine", STORY))
    fake_model.script = sequence(NOT_MET)
    task = await create(
        client,
        alice,
        search_query="Is the espresso machine in stock?",
        urls=[fake_web.url + "/shop"],
        render="browser",
        config={"search_provider": "none"},
    )
    first = await run_now(client, alice, task["id"])
    assert first["status"] == "success", first
    assert fake_model.last is not None
    assert "back in stock" in fake_model.last.prompt_text  # the model saw the rendered text
    second = await run_now(client, alice, task["id"])
    assert second["usage"]["verdict_reused"] is True
    assert fake_model.calls == 1


async def test_hostile_pages_reach_nothing_and_the_run_completes(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_model: FakeOpenAI,
    sink: Sink,
) -> None:
    fake_web.set_page("/deals", hostile_fetch(sink.url))
    fake_web.set_page("/gallery", hostile_embeds(sink.url))
    fake_web.set_page("/live", hostile_websocket(sink.url))
    fake_web.redirect("/jump", sink.url + "/secret")
    fake_model.script = sequence(NOT_MET)
    task = await create(
        client,
        alice,
        search_query="Any deals on espresso machines?",
        urls=[fake_web.url + p for p in ("/deals", "/gallery", "/live", "/jump")],
        render="browser",
        screenshot=True,
        config={"search_provider": "none"},
    )
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success", execution
    assert execution["usage"]["pages_fetched"] == 3
    assert execution["usage"]["pages_failed"] == 1  # the redirect to the private address
    assert fake_model.last is not None
    assert "internal secret" not in fake_model.last.prompt_text
    assert "LEAKED" not in fake_model.last.prompt_text
    await asyncio.sleep(0.5)
    assert sink.touched() == (0, 0)


@pytest.mark.parametrize("extra_settings", [{}])
async def test_without_a_browser_render_browser_is_refused_naming_the_setting(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    url = fake_web.url + "/shop"
    for body, loc in (
        ({"urls": [url], "render": "browser"}, ["body", "render"]),
        ({"urls": [url, {"url": url, "render": "browser"}]}, ["body", "urls", 1, "render"]),
    ):
        refused = await client.post(TASKS, json=body, headers=alice.headers)
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["detail"]
        assert error["loc"] == loc
        assert error["type"] == "browser_not_configured"
        assert "TORALE_BROWSER_PATH" in error["msg"]
        assert "TORALE_BROWSER_URL" in error["msg"]
    preview = await client.post(
        f"{TASKS}/preview", json={"urls": [url], "render": "browser"}, headers=alice.headers
    )
    assert preview.status_code == 422
    assert preview.json()["detail"][0]["loc"] == ["body", "render"]

    task = await create(client, alice, urls=[url])
    patched = await client.patch(
        f"{TASKS}/{task['id']}", json={"render": "browser"}, headers=alice.headers
    )
    assert patched.status_code == 422
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json()[
        "render"
    ] == "plain"


async def test_a_screenshot_needs_a_page_read_with_the_browser(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    url = fake_web.url + "/shop"
    refused = await client.post(
        TASKS, json={"urls": [url], "screenshot": True}, headers=alice.headers
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "screenshot"]
    task = await create(client, alice, urls=[url], render="browser", screenshot=True)
    back = await client.patch(
        f"{TASKS}/{task['id']}", json={"render": "plain"}, headers=alice.headers
    )
    assert back.status_code == 422
    both = await client.patch(
        f"{TASKS}/{task['id']}",
        json={"render": "plain", "screenshot": False},
        headers=alice.headers,
    )
    assert both.status_code == 200, both.text
    assert (both.json()["render"], both.json()["screenshot"]) == ("plain", False)
