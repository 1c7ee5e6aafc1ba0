"""Change and rules tasks through the API, against local pages that change between runs (with
noise outside the selectors): each mode with each notify_behavior, selectors that stop
matching, JSON APIs, snapshots stored once, diffs between runs, and owner scoping."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from fastapi import FastAPI

from tests.fakes import FakeWeb
from tests.fixtures import sdk_002
from tests.fixtures.engine import run_now
from tests.fixtures.users import ApiUser
from tests.fixtures.watch import TASKS, contents, create, payloads, shop
from torale.sdk import models as sdk_models


@pytest.fixture
def noisy_web(fake_web: FakeWeb) -> FakeWeb:
    fake_web.noise = True  # a fresh session id and timestamp on every answer
    return fake_web


async def test_change_with_a_selector_ignores_noise_and_notifies_with_the_diff(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, noisy_web: FakeWeb
) -> None:
    noisy_web.set_page("/p", shop("$59.00"))
    url = noisy_web.url + "/p"
    task = await create(
        client, alice, urls=[{"url": url, "selector": "#offer"}], notify_behavior="always"
    )
    assert task["mode"] == "change"  # only urls: change, whether or not a model is configured
    assert task["urls"] == [url]  # what clients that know only strings read
    assert task["targets"] == [{"url": url, "selector": "#offer", "render": None}]

    first = await run_now(client, alice, task["id"])
    assert first["status"] == "success", first
    assert first["condition_met"] is False  # the baseline
    assert "baseline" in first["result"]["answer"]
    assert first["usage"]["llm_calls"] == 0
    assert await payloads(app, first["id"]) == []

    second = await run_now(client, alice, task["id"])  # only the noise changed
    assert second["condition_met"] is False
    assert second["notification"] is None

    noisy_web.set_page("/p", shop("$49.00"))
    third = await run_now(client, alice, task["id"])
    assert third["condition_met"] is True
    [event] = await payloads(app, third["id"])
    assert "-$59.00" in event["data"]["diff"]
    assert "+$49.00" in event["data"]["diff"]
    assert "+$49.00" in third["notification"]  # the email's text carries it too

    fourth = await run_now(client, alice, task["id"])  # unchanged again
    assert fourth["condition_met"] is False
    assert await payloads(app, fourth["id"]) == []


@pytest.mark.parametrize(
    ("behavior", "notified"),
    [
        # runs: baseline, change A, no change, change B, change C (only in case)
        ("once", [False, True, False, False, False]),
        ("always", [False, True, False, True, True]),
        ("track_state", [False, True, False, True, True]),
    ],
)
async def test_change_with_each_notify_behavior(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    behavior: str,
    notified: list[bool],
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    task = await create(
        client,
        alice,
        urls=[{"url": fake_web.url + "/p", "selector": ".price"}],
        notify_behavior=behavior,
    )
    seen = []
    for price in ["$59.00", "$49.00", "$49.00", "$39.00", "$38.00"]:
        fake_web.set_page("/p", shop(price))
        execution = await run_now(client, alice, task["id"])
        assert execution["status"] == "success", execution
        seen.append(bool(await payloads(app, execution["id"])))
    assert seen == notified
    state = (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json()["state"]
    assert state == ("completed" if behavior == "once" else "active")


async def test_change_filters(client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb) -> None:
    fake_web.set_page("/p", shop("$59.00", extra="<p>Updated 10:00</p>"))
    url = fake_web.url + "/p"
    ignoring = await create(
        client,
        alice,
        urls=[{"url": url, "selector": "#offer"}],
        change={"ignore_lines": ["^updated "]},
        notify_behavior="always",
    )
    removals = await create(
        client,
        alice,
        urls=[{"url": url, "selector": "#offer"}],
        change={"only": "removals"},
        notify_behavior="always",
    )
    additions = await create(
        client,
        alice,
        urls=[{"url": url, "selector": "#offer"}],
        change={"only": "additions"},
        notify_behavior="always",
    )
    tasks = [ignoring, removals, additions]

    async def run_all() -> list[bool]:
        return [(await run_now(client, alice, t["id"]))["condition_met"] for t in tasks]

    assert await run_all() == [False, False, False]  # baselines
    fake_web.set_page("/p", shop("$59.00", extra="<p>Updated 11:00</p>"))  # ignored line
    assert await run_all() == [False, True, True]
    fake_web.set_page("/p", shop("$59.00", extra="<p>Updated 11:00</p><p>Gift</p>"))  # added
    assert await run_all() == [True, False, True]
    fake_web.set_page("/p", shop("$59.00", stock="", extra="<p>Updated 11:00</p><p>Gift</p>"))
    assert await run_all() == [True, True, False]  # a line went away


async def test_rules_with_prices_in_several_formats_and_notify_behaviors(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    url = fake_web.url + "/p"
    rules = {
        "match": "all",
        "conditions": [
            {"kind": "text", "op": "contains", "value": "In stock"},
            {"kind": "number", "op": "<", "value": 50},
        ],
    }
    tasks = {
        behavior: await create(
            client,
            alice,
            urls=[{"url": url, "selector": "#offer"}],
            rules=rules,
            notify_behavior=behavior,
        )
        for behavior in ("once", "always", "track_state")
    }
    assert {t["mode"] for t in tasks.values()} == {"rules"}
    pages = [
        shop("1.299,00 €"),  # not met
        shop("49,99 €"),  # met
        shop("$49.99"),  # met, same number
        shop("$45.00"),  # met, number changed
        shop("$45.00", stock="Sold out"),  # not met
    ]
    notified: dict[str, list[bool]] = {b: [] for b in tasks}
    for html in pages:
        fake_web.set_page("/p", html)
        for behavior, task in tasks.items():
            execution = await run_now(client, alice, task["id"])
            assert execution["status"] == "success", execution
            notified[behavior].append(bool(await payloads(app, execution["id"])))
    assert notified["once"] == [False, True, False, False, False]
    assert notified["always"] == [False, True, True, True, False]
    assert notified["track_state"] == [False, True, False, True, False]
    last = (await client.get(f"{TASKS}/{tasks['always']['id']}", headers=alice.headers)).json()
    label = f"{url} [#offer]"
    assert last["last_known_state"][label]["number"] == 45.0


async def test_rules_on_a_json_api_with_drop_pct(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    def api(price: float) -> str:
        return json.dumps({"session": str(uuid.uuid4()), "item": {"price": price}})

    fake_web.set_page("/api", api(100.0), content_type="application/json")
    task = await create(
        client,
        alice,
        urls=[{"url": fake_web.url + "/api", "selector": "json:$.item.price"}],
        rules={"conditions": [{"kind": "number", "op": "drop_pct", "value": 10}]},
        notify_behavior="always",
    )
    met = []
    for price in [100.0, 95.0, 80.0, 81.0]:
        fake_web.set_page("/api", api(price), content_type="application/json")
        met.append((await run_now(client, alice, task["id"]))["condition_met"])
    assert met == [False, False, True, False]  # 95→80 dropped 15.8 %


async def test_a_selector_that_stops_matching_fails_the_run_saying_so(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    task = await create(client, alice, urls=[{"url": fake_web.url + "/p", "selector": ".price"}])
    assert (await run_now(client, alice, task["id"]))["status"] == "success"
    fake_web.set_page("/p", "<html><body><p>Redesigned</p></body></html>")
    failed = await run_now(client, alice, task["id"])
    assert failed["status"] == "failed"
    assert "CSS selector .price matched nothing" in failed["error_message"]


async def test_snapshots_are_stored_once_and_diffs_compare_any_two_runs(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, bob: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    url = fake_web.url + "/p"
    task = await create(client, alice, urls=[{"url": url, "selector": "#offer"}, url])
    runs = [await run_now(client, alice, task["id"]) for _ in range(3)]
    assert await contents(app) == 2  # two targets, three runs, one copy of each text
    fake_web.set_page("/p", shop("$49.00"))
    runs.append(await run_now(client, alice, task["id"]))
    assert await contents(app) == 4

    path = f"{TASKS}/{task['id']}/executions/{runs[0]['id']}/sources"
    sources = (await client.get(path, headers=alice.headers)).json()
    assert [(s["url"], s["selector"]) for s in sources] == [(url, "#offer"), (url, None)]
    again = await client.get(path.replace(runs[0]["id"], runs[2]["id"]), headers=alice.headers)
    assert [s["content_hash"] for s in again.json()] == [s["content_hash"] for s in sources]

    latest = (await client.get(f"{TASKS}/{task['id']}/diff", headers=alice.headers)).json()
    assert latest["from_execution_id"] == runs[2]["id"]
    assert latest["to_execution_id"] == runs[3]["id"]
    assert latest["changed"] is True
    assert latest["sources"][0]["removed"] == ["$59.00"]
    assert latest["sources"][0]["added"] == ["$49.00"]
    assert "+$49.00" in latest["unified"]
    same = await client.get(
        f"{TASKS}/{task['id']}/diff",
        params={"from": runs[0]["id"], "to": runs[2]["id"]},
        headers=alice.headers,
    )
    assert same.json()["changed"] is False
    assert same.json()["unified"] == ""

    # Another user's task or execution is a 404, as is an execution of another task.
    assert (await client.get(path, headers=bob.headers)).status_code == 404
    diff = f"{TASKS}/{task['id']}/diff"
    assert (await client.get(diff, headers=bob.headers)).status_code == 404
    other = await create(client, alice, urls=[url])
    foreign = f"{TASKS}/{other['id']}/executions/{runs[0]['id']}/sources"
    assert (await client.get(foreign, headers=alice.headers)).status_code == 404
    none_yet = await client.get(f"{TASKS}/{other['id']}/diff", headers=alice.headers)
    assert none_yet.status_code == 422


async def test_old_and_new_sdks_read_tasks_that_use_the_new_fields(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    url = fake_web.url + "/p"
    made = await create(
        client,
        alice,
        urls=[{"url": url, "selector": ".price"}, url],
        rules={"match": "any", "conditions": [{"kind": "number", "op": "<", "value": 50}]},
    )
    await run_now(client, alice, made["id"])
    body = (await client.get(f"{TASKS}/{made['id']}", headers=alice.headers)).json()
    old = sdk_002.Task(**body)  # the published 0.0.2 SDK
    assert old.search_query == ""
    assert old.last_known_state == body["last_known_state"]
    new = sdk_models.Task.model_validate(body)
    assert new.mode == "rules"
    assert new.urls == [url, url]
    assert [(t.url, t.selector) for t in new.targets] == [(url, ".price"), (url, None)]
    assert new.rules is not None
    assert isinstance(new.rules.conditions[0], sdk_models.NumberCondition)


@pytest.mark.parametrize("extra_settings", [{"model": None, "openai_base_url": None}])
async def test_without_a_model_tasks_default_to_change_and_model_tasks_are_refused(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/p", shop("$59.00"))
    task = await create(client, alice, urls=[fake_web.url + "/p"])
    assert task["mode"] == "change"
    for body in ({"search_query": "iPhone"}, {"urls": [fake_web.url + "/p"], "mode": "model"}):
        refused = await client.post(TASKS, json=body, headers=alice.headers)
        assert refused.status_code == 422
        [error] = refused.json()["detail"]
        assert error["loc"] == ["body", "mode"]
        assert "TORALE_MODEL" in error["msg"]
    bad = await client.post(
        TASKS,
        json={"urls": [{"url": fake_web.url + "/p", "selector": "div["}]},
        headers=alice.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][:3] == ["body", "urls", 0]
