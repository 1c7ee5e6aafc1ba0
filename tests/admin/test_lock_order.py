"""One lock order on PostgreSQL (issue 13, item 5): deactivating and activating an account lock
its user row and then its tasks; the scheduler's claim, a run's record, a task's update and the
tasks_version triggers write tasks and executions, whose triggers lock the same user row. Taken
in two orders, the two deadlock (deactivate answered 500). Everything locks users first now
(`torale.db.locks`); this runs them against each other many times and wants no error."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from tests.fixtures.users import ApiUser, create_test_user
from torale.db.models import Task
from torale.engine.run import _record_failure
from torale.scheduling.local import claim_due_runs, recover_expired

ROUNDS = 40


@pytest.fixture
async def admin(app: FastAPI) -> ApiUser:
    return await create_test_user(app, "root@example.com", role="admin")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite: one writer
async def test_account_levers_scheduler_and_task_writes_never_deadlock(
    app: FastAPI, client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser, bob: ApiUser
) -> None:
    engine = app.state.torale.run_engine
    tasks: list[dict[str, Any]] = []
    for user in (alice, bob) * 6:
        body = {"search_query": f"q{len(tasks)}", "urls": [], "schedule": "*/5 * * * *"}
        response = await client.post("/api/v1/tasks", json=body, headers=user.headers)
        assert response.status_code == 200, response.text
        tasks.append(response.json())
    hers = [t for t in tasks if t["user_id"] == str(alice.id)]
    failures: list[str] = []

    async def answer(request: Any) -> None:
        response = await request
        if response.status_code >= 500:
            failures.append(f"{response.request.url.path}: {response.status_code} {response.text}")

    async def guarded(work: Any) -> Any:
        try:
            return await work
        except Exception as exc:  # the deadlock surfaces as a DBAPIError here
            failures.append(f"{type(exc).__name__}: {exc}")
            return []

    for round_ in range(ROUNDS):
        now = datetime.now(UTC)
        async with app.state.torale.sessions() as session:
            await session.execute(
                update(Task)
                .where(Task.state == "active")
                .values(next_run=now - timedelta(seconds=1))
            )
            await session.commit()
        lever = "deactivate" if round_ % 2 == 0 else "activate"
        outcome = await asyncio.gather(
            answer(client.patch(f"/admin/users/{alice.id}/{lever}", headers=admin.headers)),
            guarded(claim_due_runs(engine, limit=20, now=now)),
            *(
                answer(
                    client.patch(
                        f"/api/v1/tasks/{t['id']}",
                        json={"name": f"round {round_}"},
                        headers=(alice if t in hers else bob).headers,
                    )
                )
                for t in tasks[:4]
            ),
            guarded(recover_expired(engine, limit=20, now=now + timedelta(days=1))),
        )
        for execution_id in (e for _, e in outcome[1]):  # claimed, then the run ends
            await guarded(_record_failure(engine, execution_id, "not run in this test"))
    print("\n".join(f.replace("\n", " ")[:200] for f in failures))
    assert failures == []
