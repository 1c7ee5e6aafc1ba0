"""The admin API (docs/api.md §9) on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, update

from tests.fixtures.users import ApiUser, create_test_user, set_user_active
from torale.db.models import Delivery, Execution, Task
from torale.scheduling.local import claim_due_runs

ADMIN_PREFIX = "/admin/"


@pytest.fixture
async def admin(app: FastAPI) -> ApiUser:
    return await create_test_user(app, "root@example.com", role="admin")


def admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    routes = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith(ADMIN_PREFIX):
            routes += [(method.upper(), path) for method in operations]
    return routes


async def new_task(client: httpx.AsyncClient, user: ApiUser, **body: Any) -> dict[str, Any]:
    body.setdefault("search_query", "q")
    response = await client.post("/api/v1/tasks", json=body, headers=user.headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def add_execution(
    app: FastAPI,
    task: dict[str, Any],
    user: ApiUser,
    status: str,
    *,
    ago: timedelta = timedelta(minutes=5),
    error: str | None = None,
) -> uuid.UUID:
    when = datetime.now(UTC) - ago
    execution_id = uuid.uuid4()
    async with app.state.torale.sessions() as session:
        session.add(
            Execution(
                id=execution_id,
                task_id=uuid.UUID(task["id"]),
                user_id=user.id,
                status=status,
                trigger="schedule",
                created_at=when,
                started_at=when,
                completed_at=when + timedelta(seconds=3) if status != "running" else None,
                condition_met=status == "success",
                error_message=error,
                grounding_sources=[],
                usage={"llm_calls": 1},
            )
        )
        await session.commit()
    return execution_id


async def test_every_admin_route_is_for_admins_only(
    app: FastAPI, client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser
) -> None:
    routes = admin_routes(app)
    assert len(routes) >= 9
    inactive_admin = await create_test_user(app, "old-root@example.com", role="admin")
    await set_user_active(app, inactive_admin.id, False)
    for method, path in routes:
        url = path.replace("{user_id}", str(alice.id))
        assert (await client.request(method, url)).status_code == 401, url
        plain = await client.request(method, url, headers=alice.headers)
        assert plain.status_code == 403, url
        assert plain.json() == {"detail": "Admin role required"}
        assert (
            await client.request(method, url, headers=inactive_admin.headers)
        ).status_code == 403
    for method, path in routes:
        if method == "GET":
            response = await client.get(path, headers=admin.headers)
            assert response.status_code == 200, (path, response.text)


async def test_stats_agree_with_the_rows(
    app: FastAPI, client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser, bob: ApiUser
) -> None:
    await set_user_active(app, bob.id, False)
    watched = await new_task(client, alice, search_query="iphone release")
    await new_task(client, alice, search_query="iphone release", state="paused")
    await new_task(client, alice, search_query="rust 2.0")
    async with app.state.torale.sessions() as session:
        await session.execute(
            update(Task).where(Task.id == uuid.UUID(watched["id"])).values(condition_met=True)
        )
        await session.commit()
    for status in ("success", "success", "failed"):
        await add_execution(app, watched, alice, status)
    await add_execution(app, watched, alice, "failed", ago=timedelta(days=2))  # outside 24 h

    stats = (await client.get("/admin/stats", headers=admin.headers)).json()
    assert stats["users"] == {"total": 3, "active": 2}
    assert stats["tasks"] == {
        "total": 3,
        "by_state": {"active": 2, "paused": 1, "completed": 0},
        "condition_met": 1,
    }
    assert stats["executions_24h"] == {
        "total": 3,
        "succeeded": 2,
        "failed": 1,
        "success_rate": round(2 / 3, 4),
    }
    assert stats["popular_queries"][0] == {"search_query": "iphone release", "tasks": 2}


async def test_queries_executions_errors_users(
    app: FastAPI, client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser, bob: ApiUser
) -> None:
    a1 = await new_task(client, alice, name="a1")
    await new_task(client, alice, name="a2", state="paused")
    b1 = await new_task(client, bob, name="b1")
    ok = await add_execution(app, a1, alice, "success", ago=timedelta(hours=3))
    failed = await add_execution(app, a1, alice, "failed", ago=timedelta(hours=1), error="boom")
    await add_execution(app, b1, bob, "success", ago=timedelta(minutes=30))
    async with app.state.torale.sessions() as session:
        session.add(
            Delivery(
                execution_id=ok,
                task_id=uuid.UUID(a1["id"]),
                user_id=alice.id,
                channel_index=0,
                channel_type="webhook",
                channel={"type": "webhook", "url": "https://x.example/h"},
                payload={},
                status="failed",
                last_error="the receiver answered HTTP 500",
                completed_at=datetime.now(UTC),
            )
        )
        await session.commit()
    h = admin.headers

    queries = (await client.get("/admin/queries", headers=h)).json()
    assert queries["total"] == 3
    by_name = {q["name"]: q for q in queries["items"]}
    assert by_name["a1"]["owner_email"] == "alice@example.com"
    assert by_name["a1"]["run_count"] == 2
    assert by_name["a2"]["run_count"] == 0
    active = (await client.get("/admin/queries?active_only=true", headers=h)).json()
    assert {q["name"] for q in active["items"]} == {"a1", "b1"}
    mine = (await client.get(f"/admin/queries?user_id={bob.id}", headers=h)).json()
    assert [q["name"] for q in mine["items"]] == ["b1"]

    executions = (await client.get("/admin/executions", headers=h)).json()
    assert executions["total"] == 3
    assert executions["items"][0]["task_name"] == "b1"  # newest first
    only_failed = (await client.get("/admin/executions?status=failed", headers=h)).json()
    assert [e["id"] for e in only_failed["items"]] == [str(failed)]
    assert only_failed["items"][0]["error_message"] == "boom"
    of_alice = (await client.get(f"/admin/executions?user_id={alice.id}", headers=h)).json()
    assert of_alice["total"] == 2
    of_task = (await client.get(f"/admin/executions?task_id={b1['id']}", headers=h)).json()
    assert of_task["total"] == 1
    since = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    recent = await client.get("/admin/executions", params={"since": since}, headers=h)
    assert recent.json()["total"] == 2
    assert (await client.get("/admin/executions?status=weird", headers=h)).status_code == 422

    errors = (await client.get("/admin/errors", headers=h)).json()
    assert errors["total"] == 2
    kinds = {e["kind"]: e for e in errors["items"]}
    assert kinds["execution"]["error"] == "boom"
    assert kinds["delivery"]["channel_type"] == "webhook"
    assert kinds["delivery"]["user_email"] == "alice@example.com"

    users = (await client.get("/admin/users", headers=h)).json()
    assert users["total"] == 3
    rows = {u["email"]: u for u in users["items"]}
    assert (
        rows["alice@example.com"]["task_count"],
        rows["alice@example.com"]["active_task_count"],
    ) == (2, 1)
    assert rows["alice@example.com"]["last_activity"] is not None
    assert rows["root@example.com"]["role"] == "admin"
    assert (await client.get("/admin/users?limit=101", headers=h)).status_code == 422


async def test_execution_filters_read_dates_and_zoneless_times_as_utc(
    app: FastAPI, client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser
) -> None:
    task = await new_task(client, alice)
    old = await add_execution(app, task, alice, "success", ago=timedelta(days=3))
    recent = await add_execution(app, task, alice, "success", ago=timedelta(minutes=5))
    now = datetime.now(UTC)

    async def ids(**params: str) -> list[str]:
        response = await client.get("/admin/executions", params=params, headers=admin.headers)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["items"]]

    yesterday = (now - timedelta(days=1)).date().isoformat()  # 2026-01-01: midnight UTC
    assert await ids(since=yesterday) == [str(recent)]
    assert await ids(until=yesterday) == [str(old)]
    zoneless = (now - timedelta(hours=1)).replace(tzinfo=None).isoformat()  # read as UTC
    assert await ids(since=zoneless) == [str(recent)]
    assert await ids(until=zoneless) == [str(old)]
    # A zone, when given, counts: an hour ago in UTC+2 is written two hours later.
    in_berlin = (now - timedelta(hours=1)).astimezone(timezone(timedelta(hours=2))).isoformat()
    assert await ids(since=in_berlin) == [str(recent)]
    response = await client.get(
        "/admin/executions", params={"since": "yesterday"}, headers=admin.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "since"]


async def test_deactivate_stops_runs_and_activate_restores_exactly(
    app: FastAPI, client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser
) -> None:
    running = [await new_task(client, alice, name=f"r{i}") for i in range(2)]
    own_pause = await new_task(client, alice, name="paused by alice", state="paused")
    engine = app.state.torale.run_engine

    response = await client.patch(f"/admin/users/{alice.id}/deactivate", headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tasks_changed"] == 2
    assert body["user"]["is_active"] is False
    # Her key is refused at once...
    assert (await client.get("/api/v1/tasks", headers=alice.headers)).status_code == 403
    # ...and her tasks do not run, even if they were due.
    async with app.state.torale.sessions() as session:
        await session.execute(
            update(Task)
            .where(Task.id.in_([uuid.UUID(t["id"]) for t in running]))
            .values(next_run=datetime.now(UTC) - timedelta(minutes=1))
        )
        await session.commit()
    assert await claim_due_runs(engine, limit=10, now=datetime.now(UTC)) == []
    listed = (await client.get(f"/admin/queries?user_id={alice.id}", headers=admin.headers)).json()
    reasons = {q["name"]: (q["state"], q["paused_reason"]) for q in listed["items"]}
    assert reasons == {
        "r0": ("paused", "account_deactivated"),
        "r1": ("paused", "account_deactivated"),
        "paused by alice": ("paused", None),
    }

    restored = await client.patch(f"/admin/users/{alice.id}/activate", headers=admin.headers)
    assert restored.json()["tasks_changed"] == 2
    tasks = (await client.get("/api/v1/tasks", headers=alice.headers)).json()["items"]
    states = {t["name"]: (t["state"], t["next_run"] is not None) for t in tasks}
    assert states == {
        "r0": ("active", True),
        "r1": ("active", True),
        "paused by alice": ("paused", False),
    }
    assert own_pause["id"] in {t["id"] for t in tasks}
    assert {t["id"] for t in running} <= {t["id"] for t in tasks}


async def test_deactivation_edge_cases(
    client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser
) -> None:
    yourself = await client.patch(f"/admin/users/{admin.id}/deactivate", headers=admin.headers)
    assert yourself.status_code == 409
    assert yourself.json() == {"detail": "You cannot deactivate your own account"}
    missing = await client.patch(f"/admin/users/{uuid.uuid4()}/deactivate", headers=admin.headers)
    assert missing.status_code == 404
    assert (
        await client.patch("/admin/users/nope/activate", headers=admin.headers)
    ).status_code == 422
    twice = [
        await client.patch(f"/admin/users/{alice.id}/deactivate", headers=admin.headers)
        for _ in range(2)
    ]
    assert [r.status_code for r in twice] == [200, 200]
    assert twice[1].json()["tasks_changed"] == 0


@pytest.mark.parametrize(
    "path",
    ["/admin/queries", "/admin/executions", "/admin/errors", "/admin/users"],
)
async def test_each_list_is_one_query_per_page(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: ApiUser,
    alice: ApiUser,
    path: str,
) -> None:
    for i in range(25):
        task = await new_task(client, alice, name=f"t{i}")
        await add_execution(app, task, alice, "failed", error="e")
        await create_test_user(app, f"user{i}@example.com")
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    engine = app.state.torale.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        per_page = []
        for limit in (5, 20):
            statements.clear()
            response = await client.get(f"{path}?limit={limit}", headers=admin.headers)
            assert response.status_code == 200
            assert len(response.json()["items"]) == limit
            per_page.append(len([s for s in statements if "key_hash" not in s]))  # not auth
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert per_page[0] == per_page[1] == 1  # one statement, whatever the page size
