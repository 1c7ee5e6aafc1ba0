"""GET /admin/temporal/schedules and /admin/temporal/workflows with the embedded scheduler."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from tests.fixtures.users import ApiUser, create_test_user
from torale.db.database import session_scope
from torale.executions.lifecycle import start_execution
from torale.statuses import ExecutionStatus, Trigger


async def test_admin_only(client: httpx.AsyncClient, alice: ApiUser) -> None:
    for path in ("/admin/temporal/schedules", "/admin/temporal/workflows"):
        response = await client.get(path, headers=alice.headers)
        assert response.status_code == 403
        assert response.json() == {"detail": "Admin role required"}
        assert (await client.get(path)).status_code == 401


async def test_schedules_and_runs(app: FastAPI, client: httpx.AsyncClient, alice: ApiUser) -> None:
    admin = await create_test_user(app, "root@example.com", role="admin")
    active = (
        await client.post(
            "/api/v1/tasks",
            json={"search_query": "a", "schedule": "0 6 * * *", "timezone": "Asia/Tokyo"},
            headers=alice.headers,
        )
    ).json()
    paused = (
        await client.post(
            "/api/v1/tasks", json={"search_query": "b", "state": "paused"}, headers=alice.headers
        )
    ).json()
    response = await client.get("/admin/temporal/schedules", headers=admin.headers)
    assert response.status_code == 200
    listing = response.json()
    assert listing["total"] == 2
    by_task = {s["task_id"]: s for s in listing["items"]}
    first = by_task[active["id"]]
    assert first["cron"] == "0 6 * * *"
    assert first["timezone"] == "Asia/Tokyo"
    assert first["paused"] is False
    assert first["user_id"] == str(alice.id)
    times = [datetime.fromisoformat(t) for t in first["next_run_times"]]
    assert len(times) == 3
    assert times[0] == datetime.fromisoformat(active["next_run"])
    assert times[1] - times[0] == timedelta(days=1)
    assert by_task[paused["id"]]["paused"] is True
    assert by_task[paused["id"]]["next_run_times"] == []

    async with session_scope(app.state.torale.sessions) as session:
        execution, _ = await start_execution(
            session,
            task_id=uuid.UUID(active["id"]),
            user_id=alice.id,
            trigger=Trigger.MANUAL,
            status=ExecutionStatus.RUNNING,
            lease=timedelta(minutes=1),
        )
    runs = (await client.get("/admin/temporal/workflows", headers=admin.headers)).json()
    assert runs["total"] == 1
    [run] = runs["items"]
    assert run["execution_id"] == str(execution.id)
    assert run["task_id"] == active["id"]
    assert run["status"] == "running"
    assert run["closed_at"] is None
    assert datetime.fromisoformat(run["started_at"]) <= datetime.now(UTC)
