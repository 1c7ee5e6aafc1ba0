"""Task routes (docs/api.md §4) on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.users import ApiUser
from torale.db.models import Task
from torale.tasks.schedule import ACCEPTED

TASKS = "/api/v1/tasks"


async def create(client: httpx.AsyncClient, user: ApiUser, **body: Any) -> dict[str, Any]:
    body.setdefault("search_query", "When is the next iPhone release?")
    response = await client.post(TASKS, json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_create_with_defaults(client: httpx.AsyncClient, alice: ApiUser) -> None:
    before = datetime.now(UTC)
    task = await create(client, alice, search_query="  iPhone 18 release date  ")
    assert task["name"] == "iPhone 18 release date"  # named after its query
    assert task["search_query"] == "iPhone 18 release date"
    assert task["condition_description"] == "iPhone 18 release date"
    assert task["schedule"] == "0 9 * * *"
    assert task["timezone"] == "UTC"
    assert task["notify_behavior"] == "once"
    assert task["notifications"] == []
    assert task["urls"] == []
    assert task["config"] == {}
    assert task["executor_type"] == "llm_grounded_search"
    assert task["state"] == "active"
    assert task["is_active"] is True
    assert task["condition_met"] is False
    assert task["last_known_state"] is None
    assert task["last_execution"] is None
    assert task["last_execution_id"] is None
    assert task["context"] is None
    assert task["user_id"] == str(alice.id)
    next_run = parse_time(task["next_run"])
    assert next_run.tzinfo is not None
    assert next_run > before
    assert (next_run.hour, next_run.minute) == (9, 0)
    assert next_run - before <= timedelta(days=1)
    for field in ("created_at", "updated_at", "state_changed_at"):
        assert task[field].endswith(("Z", "+00:00"))


@pytest.mark.parametrize("settings_overrides", [{"allowed_models": "openai:gpt-4o-mini"}])
async def test_create_full_and_get(client: httpx.AsyncClient, alice: ApiUser) -> None:
    body = {
        "name": "Release watch",
        "search_query": "next iPhone release",
        "condition_description": "Apple has announced a specific date",
        "urls": ["https://www.apple.com/newsroom/", "https://www.apple.com/newsroom/"],
        "schedule": "30 8 * * 1-5",
        "timezone": "Europe/Berlin",
        "notify_behavior": "track_state",
        "notifications": [
            {"type": "webhook", "url": "https://hooks.example.com/t", "headers": {"X-Token": "s3"}},
            {"type": "email", "address": "alice@example.com"},
        ],
        "config": {"model": "openai:gpt-4o-mini", "search_provider": "none"},
        "context": {"customer": 42, "tags": ["a", "b"]},
    }
    task = await create(client, alice, **body)
    assert task["urls"] == ["https://www.apple.com/newsroom/"]  # deduplicated
    assert task["config"] == body["config"]
    assert task["context"] == body["context"]
    assert task["notify_behavior"] == "track_state"
    # Webhook header values are secrets: masked in responses.
    assert task["notifications"][0] == {
        "type": "webhook",
        "url": "https://hooks.example.com/t",
        "headers": {"X-Token": "********"},
        "enabled": True,
    }
    assert task["notifications"][1] == {"type": "email", "address": "alice@example.com"}
    # 08:30 Berlin in winter is 07:30 UTC, on a weekday.
    next_run = parse_time(task["next_run"])
    assert (next_run.hour, next_run.minute) == (7, 30)
    assert next_run.weekday() < 5

    fetched = await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert fetched.status_code == 200
    assert fetched.json() == task


async def stored_notifications(app: FastAPI, task_id: str) -> list[dict[str, Any]]:
    async with app.state.torale.sessions() as session:
        task = await session.get(Task, uuid.UUID(task_id))
        assert task is not None
        notifications: list[dict[str, Any]] = task.notifications
        return notifications


async def test_masked_header_is_kept_on_round_trip(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    hook = {
        "type": "webhook",
        "url": "https://hooks.example.com/t",
        "headers": {"X-Token": "s3"},
        "enabled": True,
    }
    task = await create(client, alice, notifications=[hook])
    assert await stored_notifications(app, task["id"]) == [hook]
    # Sending back what GET returned (mask included) keeps the stored secret...
    echoed = await client.put(
        f"{TASKS}/{task['id']}",
        json={"notifications": [*task["notifications"], {"type": "email", "address": "a@b.co"}]},
        headers=alice.headers,
    )
    assert echoed.status_code == 200, echoed.text
    stored = await stored_notifications(app, task["id"])
    assert stored[0] == hook
    assert stored[1] == {"type": "email", "address": "a@b.co"}
    # ...a new value replaces it...
    hook2 = {**hook, "headers": {"X-Token": "new"}}
    replaced = await client.put(
        f"{TASKS}/{task['id']}", json={"notifications": [hook2]}, headers=alice.headers
    )
    assert replaced.status_code == 200
    assert await stored_notifications(app, task["id"]) == [hook2]
    # ...and a mask for a header with no saved value is refused.
    other = {
        "type": "webhook",
        "url": "https://other.example.com/",
        "headers": {"X-Token": "********"},
    }
    refused = await client.put(
        f"{TASKS}/{task['id']}", json={"notifications": [other]}, headers=alice.headers
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "notifications", 0, "headers", "X-Token"]


async def test_both_trailing_slash_forms(client: httpx.AsyncClient, alice: ApiUser) -> None:
    created = await client.post(f"{TASKS}/", json={"search_query": "slash"}, headers=alice.headers)
    assert created.status_code == 200
    for path in (TASKS, f"{TASKS}/"):
        response = await client.get(path, headers=alice.headers)
        assert response.status_code == 200, path
        assert response.json()["total"] == 1
    task_id = created.json()["id"]
    response = await client.get(f"{TASKS}/{task_id}/", headers=alice.headers)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "schedule",
    [
        "not a cron",
        "61 * * * *",
        "* * * *",
        "0 0 * * * *",
        "0 9 30 2 *",
        "@every 5m",
        "",
        "R/5 * * * *",  # croniter's random minute: runs can come any distance apart
        "@reboot",
        "0 9 ? * MON",
        "H * * * *",
    ],
)
async def test_invalid_cron_is_422_with_exact_shape(
    client: httpx.AsyncClient, alice: ApiUser, schedule: str
) -> None:
    response = await client.post(
        TASKS, json={"search_query": "q", "schedule": schedule}, headers=alice.headers
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) == 1
    assert detail[0]["loc"] == ["body", "schedule"]
    assert detail[0]["msg"].startswith("Invalid cron expression")
    assert set(detail[0]) == {"loc", "msg", "type"}
    assert detail[0]["msg"].endswith(ACCEPTED)  # it says what is accepted
    assert detail[0]["type"] == "cron_invalid"


async def test_cron_macros_are_stored_as_five_fields(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await create(client, alice, schedule="@daily")
    assert task["schedule"] == "0 0 * * *"


@pytest.mark.parametrize("settings_overrides", [{"min_schedule_seconds": 7200}])
async def test_minimum_interval(client: httpx.AsyncClient, alice: ApiUser) -> None:
    for schedule in ("*/5 * * * *", "0,30 * * * *", "0 0,23 * * *"):
        response = await client.post(
            TASKS, json={"search_query": "q", "schedule": schedule}, headers=alice.headers
        )
        assert response.status_code == 422, schedule
        error = response.json()["detail"][0]
        assert error["loc"] == ["body", "schedule"]
        assert "7200 seconds" in error["msg"]
    # Two-hourly is exactly the minimum; Mondays at 00:00 and 23:00 are 23 hours apart at best.
    for schedule in ("0 */2 * * *", "0 0,23 * * 1"):
        await create(client, alice, schedule=schedule)
    task = await create(client, alice)
    response = await client.patch(
        f"{TASKS}/{task['id']}", json={"schedule": "*/10 * * * *"}, headers=alice.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "schedule"]


async def test_default_minimum_refuses_every_minute(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    response = await client.post(
        TASKS, json={"search_query": "q", "schedule": "* * * * *"}, headers=alice.headers
    )
    assert response.status_code == 422
    assert "300 seconds" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    "timezone",
    ["Mars/Olympus", "../../etc/passwd", "utc+2", "", "localtime", "Factory", "posix/UTC"],
)
async def test_invalid_timezone(client: httpx.AsyncClient, alice: ApiUser, timezone: str) -> None:
    response = await client.post(
        TASKS, json={"search_query": "q", "timezone": timezone}, headers=alice.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "timezone"]
    assert "IANA" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "search_query"]),
        ({"search_query": ""}, ["body", "search_query"]),
        ({"search_query": "   "}, ["body", "search_query"]),
        ({"search_query": "x" * 2001}, ["body", "search_query"]),
        ({"search_query": 12}, ["body", "search_query"]),
        ({"search_query": "q", "name": ""}, ["body", "name"]),
        ({"search_query": "q", "notify_behavior": "sometimes"}, ["body", "notify_behavior"]),
        ({"search_query": "q", "state": "completed"}, ["body", "state"]),
        ({"search_query": "q", "config": {"temperature": 1}}, ["body", "config", "temperature"]),
        ({"search_query": "q", "config": {"search_provider": "bing"}}, None),
        ({"search_query": "q", "surprise": 1}, ["body", "surprise"]),
        ({"search_query": "q", "urls": ["ftp://example.com/x"]}, ["body", "urls", 0]),
        ({"search_query": "q", "urls": ["http://127.0.0.1/admin"]}, ["body", "urls", 0]),
        ({"search_query": "q", "urls": "https://example.com"}, ["body", "urls"]),
        ({"search_query": "q", "notifications": [{"type": "sms", "to": "1"}]}, None),
        (
            {"search_query": "q", "notifications": [{"type": "email", "address": "not-an-email"}]},
            ["body", "notifications", 0, "email", "address"],
        ),
        (
            {"search_query": "q", "notifications": [{"type": "webhook", "url": "http://x.io/h"}]},
            ["body", "notifications", 0, "url"],
        ),
        (
            {
                "search_query": "q",
                "notifications": [{"type": "webhook", "url": "https://10.0.0.8/h"}],
            },
            ["body", "notifications", 0, "url"],
        ),
        (
            {
                "search_query": "q",
                "notifications": [{"type": "webhook", "url": "https://localhost/h"}],
            },
            ["body", "notifications", 0, "url"],
        ),
        (
            {
                "search_query": "q",
                "notifications": [
                    {
                        "type": "webhook",
                        "url": "https://x.io/h",
                        "headers": {"webhook-signature": "forged"},
                    }
                ],
            },
            ["body", "notifications", 0, "webhook", "headers", "webhook-signature", "[key]"],
        ),
        (
            {
                "search_query": "q",
                "notifications": [
                    {"type": "webhook", "url": "https://x.io/h", "headers": {"X-A": "a\r\nB: b"}}
                ],
            },
            ["body", "notifications", 0, "webhook", "headers", "X-A"],
        ),
        ({"search_query": "q", "is_active": True, "state": "paused"}, ["body", "is_active"]),
        ({"search_query": "q", "config": {"search_provider": "none"}}, ["body", "urls"]),
        (  # the test server configures no Brave key
            {"search_query": "q", "config": {"search_provider": "brave"}},
            ["body", "config", "search_provider"],
        ),
        ({"search_query": "q", "urls": ["https://x.io/a\nb"]}, ["body", "urls", 0]),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, alice: ApiUser, body: dict[str, Any], loc: list[Any] | None
) -> None:
    response = await client.post(TASKS, json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    assert all(set(item) == {"loc", "msg", "type"} for item in detail)
    if loc is not None:
        assert loc in [item["loc"] for item in detail]
    listing = await client.get(TASKS, headers=alice.headers)
    assert listing.json()["total"] == 0  # nothing half-written


@pytest.mark.parametrize(
    "settings_overrides", [{"allow_http_webhooks": True, "allow_private_networks": True}]
)
async def test_operator_settings_allow_http_and_private(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await create(
        client,
        alice,
        urls=["http://127.0.0.1:9000/page"],
        notifications=[{"type": "webhook", "url": "http://localhost:8080/hook"}],
    )
    assert task["notifications"][0]["url"] == "http://localhost:8080/hook"


async def test_run_immediately_makes_first_run_due_now(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    before = datetime.now(UTC)
    task = await create(client, alice, run_immediately=True)
    assert parse_time(task["next_run"]) - before < timedelta(seconds=5)


async def test_create_paused(client: httpx.AsyncClient, alice: ApiUser) -> None:
    task = await create(client, alice, is_active=False)
    assert task["state"] == "paused"
    assert task["next_run"] is None


async def test_list_pagination_newest_first(client: httpx.AsyncClient, alice: ApiUser) -> None:
    ids = [(await create(client, alice, name=f"t{i}"))["id"] for i in range(5)]
    page1 = (await client.get(f"{TASKS}?page=1&limit=2", headers=alice.headers)).json()
    page3 = (await client.get(f"{TASKS}?page=3&limit=2", headers=alice.headers)).json()
    beyond = (await client.get(f"{TASKS}?page=9&limit=2", headers=alice.headers)).json()
    assert (page1["total"], page1["page"], page1["limit"]) == (5, 1, 2)
    assert [t["id"] for t in page1["items"]] == [ids[4], ids[3]]
    assert [t["id"] for t in page3["items"]] == [ids[0]]
    assert beyond == {"items": [], "total": 5, "page": 9, "limit": 2}


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("page=0", ["query", "page"]),
        ("limit=0", ["query", "limit"]),
        ("limit=101", ["query", "limit"]),
        ("page=abc", ["query", "page"]),
        ("state=running", ["query", "state"]),
        ("is_active=maybe", ["query", "is_active"]),
    ],
)
async def test_list_bad_parameters(
    client: httpx.AsyncClient, alice: ApiUser, query: str, loc: list[str]
) -> None:
    response = await client.get(f"{TASKS}?{query}", headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


async def test_list_filters(client: httpx.AsyncClient, alice: ApiUser) -> None:
    active = await create(client, alice, name="active")
    paused = await create(client, alice, name="paused", state="paused")
    completed = await create(client, alice, name="done")
    await client.patch(
        f"{TASKS}/{completed['id']}", json={"state": "completed"}, headers=alice.headers
    )

    async def names(query: str) -> set[str]:
        response = await client.get(f"{TASKS}?{query}", headers=alice.headers)
        assert response.status_code == 200
        return {t["name"] for t in response.json()["items"]}

    assert await names("state=active") == {"active"}
    assert await names("state=paused") == {"paused"}
    assert await names("state=completed") == {"done"}
    assert await names("is_active=true") == {"active"}
    assert await names("is_active=false") == {"paused", "done"}
    assert await names("state=paused&is_active=true") == set()
    assert active["id"] != paused["id"]


async def test_partial_update_changes_only_sent_fields(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await create(client, alice, name="before", context={"k": 1})
    for method in ("PUT", "PATCH"):
        response = await client.request(
            method, f"{TASKS}/{task['id']}", json={"name": f"after {method}"}, headers=alice.headers
        )
        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["name"] == f"after {method}"
        unchanged = {k for k in task if k not in ("name", "updated_at")}
        assert {k: updated[k] for k in unchanged} == {k: task[k] for k in unchanged}
        assert updated["updated_at"] >= task["updated_at"]


@pytest.mark.parametrize("settings_overrides", [{"allowed_models": "ollama:llama3"}])
async def test_update_fields_and_schedule(client: httpx.AsyncClient, alice: ApiUser) -> None:
    task = await create(client, alice, search_query="old query")
    response = await client.put(
        f"{TASKS}/{task['id']}",
        json={
            "search_query": "new query",
            "schedule": "15 6 * * *",
            "timezone": "America/New_York",
            "urls": ["https://example.com/a"],
            "config": {"model": "ollama:llama3"},
            "context": None,
            "notify_behavior": "always",
        },
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["search_query"] == "new query"
    assert updated["condition_description"] == "new query"  # it followed the query
    assert updated["config"] == {"model": "ollama:llama3"}
    next_run = parse_time(updated["next_run"])
    assert (next_run.hour, next_run.minute) in {(11, 15), (10, 15)}  # 06:15 New York
    # An explicit condition stays put when the query changes.
    await client.put(
        f"{TASKS}/{task['id']}", json={"condition_description": "a date"}, headers=alice.headers
    )
    again = await client.put(
        f"{TASKS}/{task['id']}", json={"search_query": "third"}, headers=alice.headers
    )
    assert again.json()["condition_description"] == "a date"


@pytest.mark.parametrize("field", ["name", "search_query", "schedule", "state", "urls", "config"])
async def test_update_refuses_null_for_required_fields(
    client: httpx.AsyncClient, alice: ApiUser, field: str
) -> None:
    task = await create(client, alice)
    response = await client.patch(
        f"{TASKS}/{task['id']}", json={field: None}, headers=alice.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json() == task


async def test_update_validation_leaves_task_unchanged(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await create(client, alice)
    response = await client.put(
        f"{TASKS}/{task['id']}",
        json={"name": "changed", "schedule": "bogus"},
        headers=alice.headers,
    )
    assert response.status_code == 422
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json() == task


async def test_state_transitions(client: httpx.AsyncClient, alice: ApiUser) -> None:
    task = await create(client, alice)
    url = f"{TASKS}/{task['id']}"

    async def move(body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
        response = await client.patch(url, json=body, headers=alice.headers)
        assert response.status_code == expect, response.text
        data: dict[str, Any] = response.json()
        return data

    paused = await move({"state": "paused"})
    assert (paused["state"], paused["is_active"], paused["next_run"]) == ("paused", False, None)
    assert paused["state_changed_at"] > task["state_changed_at"]
    conflict = await move({"state": "completed"}, 409)
    assert conflict == {"detail": "A paused task cannot become completed"}
    resumed = await move({"is_active": True})
    assert resumed["state"] == "active"
    assert resumed["next_run"] is not None
    done = await move({"state": "completed"})
    assert (done["state"], done["next_run"]) == ("completed", None)
    assert (await move({"is_active": False}))["state"] == "completed"  # stays completed
    assert (await move({"state": "paused"}, 409))["detail"].startswith("A completed task")
    again = await move({"state": "active"})
    assert again["state"] == "active"
    assert again["next_run"] is not None
    same = await move({"state": "active"})
    assert same["state_changed_at"] == again["state_changed_at"]


async def test_delete(client: httpx.AsyncClient, alice: ApiUser) -> None:
    task = await create(client, alice)
    response = await client.delete(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).status_code == 404
    again = await client.delete(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert again.status_code == 404
    assert again.json() == {"detail": "Task not found"}


async def test_unknown_and_malformed_ids(client: httpx.AsyncClient, alice: ApiUser) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        response = await client.request(
            method, f"{TASKS}/{missing}", json={"name": "x"}, headers=alice.headers
        )
        assert response.status_code == 404
        assert response.json() == {"detail": "Task not found"}
        bad = await client.request(
            method, f"{TASKS}/not-a-uuid", json={"name": "x"}, headers=alice.headers
        )
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["path", "task_id"]


async def test_a_search_that_cannot_happen_is_refused_on_update_and_preview(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    """No search and no urls, or a provider the server lacks the key of: 422, nothing changed."""
    task = await create(client, alice, urls=["https://example.com/page"])
    for change, loc in [
        ({"urls": [], "config": {"search_provider": "none"}}, ["body", "urls"]),
        ({"config": {"search_provider": "tavily"}}, ["body", "config", "search_provider"]),
    ]:
        response = await client.patch(f"{TASKS}/{task['id']}", json=change, headers=alice.headers)
        assert response.status_code == 422, response.text
        assert [item["loc"] for item in response.json()["detail"]] == [loc]
        assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json() == task
    # With its urls kept, a task may stop searching.
    changed = await client.patch(
        f"{TASKS}/{task['id']}", json={"config": {"search_provider": "none"}}, headers=alice.headers
    )
    assert changed.status_code == 200, changed.text
    preview = await client.post(
        f"{TASKS}/preview",
        json={"search_query": "q", "config": {"search_provider": "none"}},
        headers=alice.headers,
    )
    assert preview.status_code == 422, preview.text
    assert preview.json()["detail"][0]["loc"] == ["body", "urls"]
