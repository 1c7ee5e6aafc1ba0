"""Deactivation against the user's own requests and the scheduler, on SQLite and PostgreSQL.

A request authenticates, then writes: a deactivation that commits in between must not leave the
user with active tasks, and the scheduler and run-now must not run a deactivated user's task
whatever its state says (issue 13, item 4).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from temporalio.testing import ActivityEnvironment

from tests.fakes import FakeOpenAI, FakeWeb, sequence
from tests.fixtures.engine import (  # noqa: F401 - the engine's local fakes, as fixtures here
    MET,
    _fresh_fakes,
    fake_model,
    fake_search,
    fake_web,
    new_task,
    page,
    settings_overrides,
)
from tests.fixtures.users import ApiUser, create_test_user
from torale.admin import actions as admin_actions
from torale.db.database import session_scope
from torale.db.models import Delivery, Execution, Task, User
from torale.engine import run as engine_run
from torale.errors import PermissionDeniedError
from torale.executions import actions as execution_actions
from torale.executions.lifecycle import start_execution
from torale.runtime import Runtime
from torale.scheduling.local import claim_due_runs
from torale.scheduling.temporal.activities import RunActivities
from torale.scheduling.temporal.workflows import RunRequest
from torale.statuses import ExecutionStatus, Trigger
from torale.tasks import actions as task_actions
from torale.tasks.schemas import TaskCreate

DEACTIVATED = "account_deactivated"


@pytest.fixture
async def admin(app: FastAPI) -> ApiUser:
    return await create_test_user(app, "root@example.com", role="admin")


@pytest.fixture
def rt(app: FastAPI) -> Runtime:
    state = app.state.torale
    return Runtime.build(state.run_engine, state.scheduler)


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    return {"allow_http_webhooks": True}


@pytest.fixture
def watched(fake_web: FakeWeb, fake_model: FakeOpenAI) -> dict[str, Any]:
    fake_web.set_page("/p", page("The iPhone 20 ships on 12 September."))
    fake_model.script = sequence(MET)
    return {
        "urls": [fake_web.url + "/p"],
        "config": {"search_provider": "none"},
        "notifications": [{"type": "webhook", "url": fake_web.url + "/hook"}],
    }


async def tasks_of(app: FastAPI, user_id: uuid.UUID) -> list[Task]:
    async with app.state.torale.sessions() as session:
        return list(await session.scalars(select(Task).where(Task.user_id == user_id)))


async def count(app: FastAPI, model: Any) -> int:
    async with app.state.torale.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def deactivate_behind_the_back(app: FastAPI, user_id: uuid.UUID) -> None:
    """The account is deactivated but its tasks stay active: what a lost race left behind."""
    async with app.state.torale.sessions() as session:
        await session.execute(update(User).where(User.id == user_id).values(is_active=False))
        await session.commit()


# --- closing the window at create and resume ---------------------------------------------


async def test_writes_that_passed_authentication_before_deactivation_are_refused(
    app: FastAPI, rt: Runtime, admin: ApiUser, alice: ApiUser, client: httpx.AsyncClient
) -> None:
    paused = await new_task(client, alice, name="paused", state="paused")
    # Alice's requests authenticated; then the admin's deactivation committed; then they write.
    await admin_actions.deactivate_user(rt, user_id=alice.id, actor_id=admin.id)
    with pytest.raises(PermissionDeniedError, match="deactivated"):
        await task_actions.create_task(
            rt, user_id=alice.id, data=TaskCreate(search_query="q", run_immediately=True)
        )
    with pytest.raises(PermissionDeniedError, match="deactivated"):
        await task_actions.resume_task(rt, user_id=alice.id, task_id=uuid.UUID(paused["id"]))
    with pytest.raises(PermissionDeniedError, match="deactivated"):
        await execution_actions.run_now(rt, user_id=alice.id, task_id=uuid.UUID(paused["id"]))
    [task] = await tasks_of(app, alice.id)
    assert (task.state, task.paused_reason) == ("paused", None)
    assert await count(app, Execution) == 0


async def test_creates_and_resumes_racing_a_deactivation_leave_nothing_active(
    app: FastAPI, client: httpx.AsyncClient, admin: ApiUser, alice: ApiUser
) -> None:
    paused = [await new_task(client, alice, name=f"p{i}", state="paused") for i in range(10)]

    async def create(i: int) -> int:
        await asyncio.sleep(i * 0.002)
        body = {"search_query": f"q{i}", "run_immediately": True}
        return (await client.post("/api/v1/tasks", json=body, headers=alice.headers)).status_code

    async def resume(i: int, task: dict[str, Any]) -> int:
        await asyncio.sleep(i * 0.006)
        url = f"/api/v1/tasks/{task['id']}"
        return (
            await client.patch(url, json={"state": "active"}, headers=alice.headers)
        ).status_code

    async def deactivate() -> int:
        await asyncio.sleep(0.03)
        url = f"/admin/users/{alice.id}/deactivate"
        return (await client.patch(url, headers=admin.headers)).status_code

    answers = await asyncio.gather(
        *(create(i) for i in range(30)), *(resume(i, t) for i, t in enumerate(paused)), deactivate()
    )
    assert answers[-1] == 200
    assert set(answers[:-1]) <= {200, 403}
    active = [t.name for t in await tasks_of(app, alice.id) if t.state == "active"]
    assert active == []
    far = datetime.now(UTC) + timedelta(days=400)
    assert await claim_due_runs(app.state.torale.run_engine, limit=100, now=far) == []


# --- the scheduler and run-now, whatever the task's state says ---------------------------


async def test_the_local_scheduler_pauses_instead_of_running_a_deactivated_users_task(
    app: FastAPI,
    rt: Runtime,
    admin: ApiUser,
    alice: ApiUser,
    bob: ApiUser,
    client: httpx.AsyncClient,
) -> None:
    hers = await new_task(client, alice, run_immediately=True)
    his = await new_task(client, bob, run_immediately=True)
    await deactivate_behind_the_back(app, alice.id)
    claimed = await claim_due_runs(app.state.torale.run_engine, limit=10, now=datetime.now(UTC))
    assert [t for t, _ in claimed] == [uuid.UUID(his["id"])]
    [task] = await tasks_of(app, alice.id)
    assert (task.state, task.paused_reason, task.next_run) == ("paused", DEACTIVATED, None)
    # Activation resumes it, as it does every task deactivation paused.
    change = await admin_actions.activate_user(rt, user_id=alice.id)
    assert change.tasks_changed == 1
    [task] = await tasks_of(app, alice.id)
    assert task.id == uuid.UUID(hers["id"])
    assert (task.state, task.paused_reason) == ("active", None)


async def test_a_queued_run_of_a_deactivated_user_fails_without_running(
    app: FastAPI, alice: ApiUser, client: httpx.AsyncClient, watched: dict[str, Any]
) -> None:
    task = await new_task(client, alice, **watched)
    engine = app.state.torale.run_engine
    async with session_scope(engine.sessions, engine.write_lock) as session:
        queued, _ = await start_execution(
            session,
            task_id=uuid.UUID(task["id"]),
            user_id=alice.id,
            trigger=Trigger.MANUAL,
            status=ExecutionStatus.PENDING,
            lease=timedelta(minutes=5),
        )
    await deactivate_behind_the_back(app, alice.id)
    ran = await engine_run.run_execution(
        engine, uuid.UUID(task["id"]), Trigger.MANUAL, execution_id=queued.id
    )
    assert ran is None
    async with app.state.torale.sessions() as session:
        execution = await session.get(Execution, queued.id)
        assert execution is not None
        assert execution.status == "failed"
        assert execution.error_message == "Could not be started: the account is deactivated"
    # Without a queued execution (a Temporal schedule firing), nothing starts either.
    assert await engine_run.run_execution(engine, uuid.UUID(task["id"]), Trigger.SCHEDULE) is None
    assert await count(app, Execution) == 1
    assert await count(app, Delivery) == 0
    [row] = await tasks_of(app, alice.id)
    assert (row.state, row.paused_reason) == ("paused", DEACTIVATED)


async def test_a_run_under_way_when_its_owner_is_deactivated_notifies_nobody(
    app: FastAPI,
    alice: ApiUser,
    client: httpx.AsyncClient,
    watched: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task = await new_task(client, alice, **watched)
    real = engine_run.perform_run

    async def deactivated_meanwhile(*args: Any, **kwargs: Any) -> engine_run.RunOutcome:
        outcome = await real(*args, **kwargs)
        await deactivate_behind_the_back(app, alice.id)
        return outcome

    monkeypatch.setattr(engine_run, "perform_run", deactivated_meanwhile)
    engine = app.state.torale.run_engine
    execution_id = await engine_run.run_execution(engine, uuid.UUID(task["id"]), Trigger.MANUAL)
    async with app.state.torale.sessions() as session:
        execution = await session.get(Execution, execution_id)
        assert execution is not None
        assert (execution.status, execution.condition_met) == ("success", True)
        assert execution.notification is None
    assert await count(app, Delivery) == 0


async def test_the_temporal_activity_skips_a_deactivated_users_task(
    app: FastAPI, alice: ApiUser, client: httpx.AsyncClient, watched: dict[str, Any]
) -> None:
    task = await new_task(client, alice, **watched)
    await deactivate_behind_the_back(app, alice.id)
    activities = RunActivities(app.state.torale.run_engine)
    request = RunRequest(task_id=task["id"], trigger="schedule")
    assert await ActivityEnvironment().run(activities.run_task, request) is None
    assert await count(app, Execution) == 0
    [row] = await tasks_of(app, alice.id)
    assert (row.state, row.paused_reason) == ("paused", DEACTIVATED)
