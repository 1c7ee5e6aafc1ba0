"""The Temporal backend against a real Temporal dev server (tests/scheduling/conftest.py).

Every task is a Temporal Schedule (`torale-task-<id>`) that the API keeps in step within the
request, or refuses the change with 503; reconcile repairs what changed behind its back; runs
are RunTask workflows whose activity runs the engine — here against the engine's local fakes
(search, web pages, model), with a worker in the test or `torale worker` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from tests.fakes import Delay, FakeOpenAI, FakeSearxng, FakeWeb, ToolCall, sequence
from tests.fixtures.engine import (  # noqa: F401 - the engine's local fakes, as fixtures here
    MET,
    _fresh_fakes,
    extra_settings,
    fake_model,
    fake_search,
    fake_web,
    new_task,
    page,
)
from tests.fixtures.lifespan import lifespan
from tests.fixtures.processes import clean_env, free_port
from tests.fixtures.temporal import TemporalServer
from tests.fixtures.users import ApiUser
from torale.app import create_app
from torale.config import Settings
from torale.db.database import session_scope
from torale.db.models import Delivery, Execution, Task
from torale.engine import run as engine_run
from torale.scheduling.temporal import activities as activities_module
from torale.scheduling.temporal.activities import RunActivities
from torale.scheduling.temporal.scheduler import SCHEDULE_PREFIX, TemporalScheduler, schedule_id
from torale.scheduling.temporal.workflows import WORKFLOW_NAME, RunRequest, RunTaskWorkflow
from torale.scheduling.worker import temporal_worker as product_worker
from torale.state import AppState
from torale.tasks import service as tasks_service
from torale.tasks.schedule import next_run_after
from torale.tasks.schemas import TaskCreate

T = TypeVar("T")
ANNOUNCED = "Apple announced the iPhone 18 release for September 9."
WEBHOOK = {"type": "webhook", "url": "https://hooks.example.com/t"}
EMAIL = {"type": "email", "address": "alice@example.com"}


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def settings_overrides(
    fake_model: FakeOpenAI,
    fake_search: FakeSearxng,
    extra_settings: dict[str, Any],
    temporal_server: TemporalServer,
    temporal_task_queue: str,
) -> dict[str, Any]:
    """The engine's settings for the local fakes (as in tests/engine), on the Temporal backend
    with this test's own task queue."""
    return {
        "model": "fake-model",
        "openai_base_url": fake_model.url + "/v1",
        "search_provider": "searxng",
        "searxng_url": fake_search.url,
        "allowed_networks": "127.0.0.1/32",
        "provider_retries": 2,
        "retry_backoff_seconds": 0.01,
        "fetch_timeout_seconds": 2,
        "model_timeout_seconds": 5,
        "run_timeout_seconds": 15,
        "scheduler": "temporal",
        "temporal_address": temporal_server.address,
        "temporal_namespace": temporal_server.namespace,
        "temporal_task_queue": temporal_task_queue,
        **extra_settings,
    }


async def delete_all_schedules(client: Client) -> None:
    """Delete every schedule, and wait until the listing (eventually consistent) shows none."""

    async def none_listed() -> bool | None:
        listed = [entry.id async for entry in await client.list_schedules()]
        for identifier in listed:
            with contextlib.suppress(RPCError):  # deleted already, still listed for a moment
                await client.get_schedule_handle(identifier).delete()
        return True if not listed else None

    await eventually(none_listed, seconds=10, what="no schedule is listed", every=0.1)


@pytest.fixture(autouse=True)
async def _temporal_clean(app: FastAPI, temporal_client: Client) -> AsyncIterator[None]:
    """No schedule of another test (or of the tasks the app reconciled on start, before the
    tables were emptied) is left when the test begins, nor after it ends."""
    await delete_all_schedules(temporal_client)
    yield
    await delete_all_schedules(temporal_client)


@pytest.fixture
async def temporal_worker(
    app: FastAPI, temporal_client: Client, temporal_task_queue: str
) -> AsyncIterator[Worker]:
    """A worker in the test process running the product's workflow and activity, with the
    app's engine, on this test's task queue."""
    state: AppState = app.state.torale
    worker = Worker(
        temporal_client,
        task_queue=temporal_task_queue,
        workflows=[RunTaskWorkflow],
        activities=[RunActivities(state.run_engine, state.scheduler).run_task],
    )
    async with worker:
        yield worker


@pytest.fixture
def newsroom(fake_web: FakeWeb, fake_search: FakeSearxng, fake_model: FakeOpenAI) -> str:
    """A page the search engine finds, announcing the date; the model says the condition is
    met."""
    fake_web.set_page("/newsroom", page(ANNOUNCED))
    url = fake_web.url + "/newsroom"
    fake_search.set_results(None, [(url, "Apple Newsroom", "iPhone news")])
    fake_model.script = sequence(MET)
    return url


# --- helpers ----------------------------------------------------------------------------


def scheduler_of(app: FastAPI) -> TemporalScheduler:
    scheduler = app.state.torale.scheduler
    assert isinstance(scheduler, TemporalScheduler)
    return scheduler


def handle_of(client: Client, task_id: str | uuid.UUID) -> ScheduleHandle:
    return client.get_schedule_handle(schedule_id(uuid.UUID(str(task_id))))


async def describe(client: Client, task_id: str | uuid.UUID) -> ScheduleDescription:
    return await handle_of(client, task_id).describe()


async def schedule_exists(client: Client, identifier: str) -> bool:
    try:
        await client.get_schedule_handle(identifier).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def fire_times(
    cron: str, timezone: str, count: int, after: datetime | None = None
) -> list[datetime]:
    """When the cron fires next, read in the time zone, as the API computes it (next_run)."""
    times, previous = [], after or datetime.now(UTC)
    for _ in range(count):
        previous = next_run_after(cron, timezone, previous)
        times.append(previous)
    return times


def assert_follows(description: ScheduleDescription, cron: str, timezone: str) -> None:
    """The schedule is read in `timezone` and its next actions are the cron's next times."""
    assert description.schedule.spec.time_zone_name == timezone
    upcoming = description.info.next_action_times[:4]
    assert len(upcoming) == 4, upcoming
    assert upcoming == fire_times(cron, timezone, 4, upcoming[0] - timedelta(seconds=1)), (
        f"{cron} in {timezone}: Temporal fires at {upcoming}"
    )
    assert upcoming[0] > datetime.now(UTC)


def api_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, seconds: float, what: str, every: float = 0.05
) -> T:
    """Poll `check` until it returns something (not None), within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(every)


async def executions_of(app: FastAPI, task_id: str | uuid.UUID) -> list[Execution]:
    async with session_scope(app.state.torale.sessions) as session:
        rows = await session.scalars(
            select(Execution)
            .where(Execution.task_id == uuid.UUID(str(task_id)))
            .order_by(Execution.created_at)
        )
        return list(rows)


async def finished_execution(
    app: FastAPI, task_id: str | uuid.UUID, *, seconds: float, exclude: set[uuid.UUID] | None = None
) -> Execution:
    async def finished() -> Execution | None:
        for execution in await executions_of(app, task_id):
            if execution.status in ("success", "failed") and execution.id not in (exclude or ()):
                return execution
        return None

    return await eventually(finished, seconds=seconds, what=f"a finished run of task {task_id}")


async def count_tasks(app: FastAPI) -> int:
    async with session_scope(app.state.torale.sessions) as session:
        return int(await session.scalar(select(func.count()).select_from(Task)) or 0)


async def insert_task_directly(app: FastAPI, user: ApiUser, **fields: Any) -> uuid.UUID:
    """A task row written without the API (so without telling the scheduler)."""
    async with session_scope(app.state.torale.sessions) as session:
        task = await tasks_service.create_task(
            session,
            user_id=user.id,
            data=TaskCreate(search_query="Behind the API's back", **fields),
            policy=tasks_service.TaskPolicy.from_settings(app.state.torale.settings),
        )
        return task.id


@contextlib.asynccontextmanager
async def another_app(settings: Settings, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database (e.g. pointing at another Temporal), started and
    stopped like a server process, with a client for it."""
    application = create_app(settings.model_copy(update=changes))
    async with lifespan(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as c:
            yield c


async def run_workflows_of(client: Client, task_id: str | uuid.UUID) -> list[Any]:
    query = f"WorkflowType = '{WORKFLOW_NAME}' AND WorkflowId STARTS_WITH 'torale-run-{task_id}'"
    return [wf async for wf in client.list_workflows(query)]


# --- the schedule follows the task ----------------------------------------------------------


async def test_every_task_change_reaches_its_schedule(
    client: httpx.AsyncClient,
    alice: ApiUser,
    temporal_client: Client,
    temporal_task_queue: str,
    settings: Settings,
) -> None:
    task = await new_task(
        client, alice, schedule="0 9 * * 1-5", timezone="Europe/Berlin", name="Weekday mornings"
    )
    url = f"/api/v1/tasks/{task['id']}"

    # Created in the same request: the task's cron and zone, overlap skip, a catch-up window,
    # and an action that starts the RunTask workflow for this task on the configured queue.
    created = await describe(temporal_client, task["id"])
    assert_follows(created, "0 9 * * 1-5", "Europe/Berlin")
    assert api_time(task["next_run"]) == created.info.next_action_times[0]
    assert created.schedule.state.paused is False
    assert created.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert created.schedule.policy.catchup_window == timedelta(
        seconds=settings.schedule_catchup_seconds
    )
    action = created.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == WORKFLOW_NAME
    assert action.task_queue == temporal_task_queue
    [request] = await temporal_client.data_converter.decode(action.args, [RunRequest])
    assert request == RunRequest(
        task_id=task["id"], trigger="schedule", run_timeout_seconds=settings.run_timeout_seconds
    )

    # PUT with a new cron and zone: the schedule fires on the new cron in the new zone.
    response = await client.put(
        url, json={"schedule": "30 7 * * *", "timezone": "America/New_York"}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    moved = await describe(temporal_client, task["id"])
    assert_follows(moved, "30 7 * * *", "America/New_York")
    assert api_time(response.json()["next_run"]) == moved.info.next_action_times[0]

    # PATCH of the zone alone, then of the cron alone.
    response = await client.patch(url, json={"timezone": "Asia/Tokyo"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert_follows(await describe(temporal_client, task["id"]), "30 7 * * *", "Asia/Tokyo")
    response = await client.patch(url, json={"schedule": "@weekly"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert_follows(await describe(temporal_client, task["id"]), "0 0 * * 0", "Asia/Tokyo")

    # Pause; pausing the paused task again (both spellings) succeeds and keeps it paused.
    for body in ({"state": "paused"}, {"state": "paused"}, {"is_active": False}):
        response = await client.patch(url, json=body, headers=alice.headers)
        assert response.status_code == 200, (body, response.text)
        assert response.json()["state"] == "paused"
        assert (await describe(temporal_client, task["id"])).schedule.state.paused is True

    # Resume with a new cron in the same request.
    response = await client.patch(
        url, json={"is_active": True, "schedule": "15 6 * * *"}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    resumed = await describe(temporal_client, task["id"])
    assert resumed.schedule.state.paused is False
    assert_follows(resumed, "15 6 * * *", "Asia/Tokyo")
    assert api_time(response.json()["next_run"]) == resumed.info.next_action_times[0]

    response = await client.delete(url, headers=alice.headers)
    assert response.status_code == 204, response.text
    assert not await schedule_exists(temporal_client, schedule_id(uuid.UUID(task["id"])))


async def test_a_task_created_paused_can_be_paused_reactivated_and_deleted(
    client: httpx.AsyncClient, alice: ApiUser, temporal_client: Client
) -> None:
    """What the hosted 0.0.2 backend answered 500 to (and whose cron it never updated)."""
    task = await new_task(client, alice, schedule="0 12 * * *", state="paused")
    url = f"/api/v1/tasks/{task['id']}"
    paused = await describe(temporal_client, task["id"])
    assert paused.schedule.state.paused is True
    assert_follows(paused, "0 12 * * *", "UTC")

    response = await client.patch(url, json={"state": "paused"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    response = await client.put(
        url, json={"schedule": "0 18 * * *", "timezone": "Europe/Paris"}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    still_paused = await describe(temporal_client, task["id"])
    assert still_paused.schedule.state.paused is True
    assert_follows(still_paused, "0 18 * * *", "Europe/Paris")

    response = await client.patch(url, json={"state": "active"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    active = await describe(temporal_client, task["id"])
    assert active.schedule.state.paused is False
    assert_follows(active, "0 18 * * *", "Europe/Paris")
    assert api_time(response.json()["next_run"]) == active.info.next_action_times[0]

    other = await new_task(client, alice, is_active=False)
    assert (await describe(temporal_client, other["id"])).schedule.state.paused is True
    response = await client.delete(f"/api/v1/tasks/{other['id']}", headers=alice.headers)
    assert response.status_code == 204, response.text
    assert not await schedule_exists(temporal_client, schedule_id(uuid.UUID(other["id"])))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database plays no part
@pytest.mark.parametrize(
    ("cron", "timezone"),
    [
        pytest.param("0 9 * * 1-5", "America/New_York", id="weekdays"),
        pytest.param("0 9 13 * 5", "UTC", id="day-of-month-or-weekday"),
        pytest.param("0 9 * * 5#2", "UTC", id="second-friday"),
        pytest.param("0 9 L * *", "UTC", id="last-day-of-month"),
    ],
)
async def test_temporal_fires_when_the_api_says(
    client: httpx.AsyncClient, alice: ApiUser, temporal_client: Client, cron: str, timezone: str
) -> None:
    """A cron the API accepts runs at the times the API reports (`next_run`, computed with
    croniter), or the API refuses it as invalid: never a 503 or a silently different schedule."""
    response = await client.post(
        "/api/v1/tasks",
        json={"search_query": "q", "schedule": cron, "timezone": timezone},
        headers=alice.headers,
    )
    if response.status_code == 422:
        return  # refused as a cron this server cannot run: fine
    assert response.status_code == 200, response.text
    task = response.json()
    description = await describe(temporal_client, task["id"])
    assert api_time(task["next_run"]) == description.info.next_action_times[0]
    assert_follows(description, cron, timezone)


# --- refusals ----------------------------------------------------------------------------


def closed_port() -> int:
    return free_port()  # free a moment ago: nothing listens there


async def test_when_temporal_is_unreachable_changes_are_rolled_back_with_503(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    temporal_client: Client,
    settings: Settings,
) -> None:
    task = await new_task(client, alice, name="Kept", schedule="0 9 * * *")
    url = f"/api/v1/tasks/{task['id']}"
    address = f"127.0.0.1:{closed_port()}"

    async with another_app(settings, temporal_address=address) as down:
        # The server starts anyway (reconcile failed) and says why in /health.
        health = (await down.get("/health")).json()
        assert health["scheduler"].startswith("unavailable"), health
        assert address in health["scheduler"]

        response = await down.post(
            "/api/v1/tasks", json={"search_query": "new one"}, headers=alice.headers
        )
        assert response.status_code == 503, response.text
        assert "scheduler is unavailable" in response.json()["detail"]
        assert address in response.json()["detail"]
        assert await count_tasks(app) == 1

        for method, body in (
            ("PUT", {"name": "Changed", "schedule": "0 10 * * *"}),
            ("PATCH", {"timezone": "Europe/Berlin"}),
            ("PATCH", {"state": "paused"}),
        ):
            response = await down.request(method, url, json=body, headers=alice.headers)
            assert response.status_code == 503, (body, response.text)
            assert "nothing was changed" in response.json()["detail"]
        response = await down.delete(url, headers=alice.headers)
        assert response.status_code == 503, response.text

        # Reads still work, and show the old values.
        kept = (await down.get(url, headers=alice.headers)).json()
        assert (kept["name"], kept["schedule"], kept["timezone"], kept["state"]) == (
            "Kept",
            "0 9 * * *",
            "UTC",
            "active",
        )
        assert kept["next_run"] == task["next_run"]
    assert await count_tasks(app) == 1
    unchanged = await describe(temporal_client, task["id"])
    assert unchanged.schedule.state.paused is False
    assert_follows(unchanged, "0 9 * * *", "UTC")

    # Reachable, but refusing (a namespace it does not have): a 503 that says so.
    async with another_app(settings, temporal_namespace="no-such-namespace") as refusing:
        response = await refusing.post(
            "/api/v1/tasks", json={"search_query": "new one"}, headers=alice.headers
        )
        assert response.status_code == 503, response.text
        assert "Temporal refused" in response.json()["detail"]
        response = await refusing.patch(url, json={"state": "paused"}, headers=alice.headers)
        assert response.status_code == 503, response.text
    assert await count_tasks(app) == 1
    assert (await client.get(url, headers=alice.headers)).json()["state"] == "active"


async def test_run_now_refused_by_temporal_leaves_no_pending_execution(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, settings: Settings
) -> None:
    """Run-now commits a pending execution, then asks Temporal to run it: when Temporal refuses
    (503), that execution must not stay pending — it blocks every later run of the task (run-now
    answers it instead of starting one; scheduled runs count as overlapping) until its lease
    runs out, 2 x (run time limit + margin) later."""
    task = await new_task(client, alice)
    async with another_app(settings, temporal_address=f"127.0.0.1:{closed_port()}") as down:
        response = await down.post(f"/api/v1/tasks/{task['id']}/execute", headers=alice.headers)
        assert response.status_code == 503, response.text
    left = [(e.status, e.trigger) for e in await executions_of(app, task["id"])]
    assert ("pending", "manual") not in left, f"the refused run-now left {left}"


# --- reconcile ---------------------------------------------------------------------------


async def test_reconcile_creates_missing_fixes_drifted_and_deletes_orphans(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    temporal_client: Client,
    temporal_task_queue: str,
    settings: Settings,
) -> None:
    missing = await insert_task_directly(app, alice, schedule="0 8 * * *", timezone="Europe/Rome")
    paused_behind = await new_task(client, alice, schedule="0 9 * * *")
    await handle_of(temporal_client, paused_behind["id"]).pause(note="by hand")
    recron_behind = await new_task(client, alice, schedule="0 10 * * *")
    other_cron = Schedule(
        action=ScheduleActionStartWorkflow(WORKFLOW_NAME, id="x", task_queue=temporal_task_queue),
        spec=ScheduleSpec(cron_expressions=["0 3 * * *"]),
        state=ScheduleState(paused=False),
    )

    async def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=other_cron)

    await handle_of(temporal_client, recron_behind["id"]).update(replace)
    in_step = await new_task(client, alice, schedule="0 11 * * *", state="paused")
    orphan = schedule_id(uuid.uuid4())
    await temporal_client.create_schedule(orphan, other_cron)
    foreign = f"billing-report-{uuid.uuid4().hex[:6]}"  # not Torale's: left alone
    await temporal_client.create_schedule(foreign, other_cron)

    async def all_listed() -> bool | None:
        listed = {e.id async for e in await temporal_client.list_schedules()}
        return True if {orphan, foreign} <= listed and len(listed) == 5 else None

    await eventually(all_listed, seconds=10, what="the schedules made by hand are listed")

    done = await scheduler_of(app).reconcile()
    assert done == {"created": 1, "updated": 2, "deleted": 1}
    recreated = await describe(temporal_client, missing)
    assert recreated.schedule.state.paused is False
    assert_follows(recreated, "0 8 * * *", "Europe/Rome")
    assert (await describe(temporal_client, paused_behind["id"])).schedule.state.paused is False
    assert_follows(await describe(temporal_client, recron_behind["id"]), "0 10 * * *", "UTC")
    assert (await describe(temporal_client, in_step["id"])).schedule.state.paused is True
    assert not await schedule_exists(temporal_client, orphan)
    assert await schedule_exists(temporal_client, foreign)

    async def orphan_unlisted() -> bool | None:
        listed = {e.id async for e in await temporal_client.list_schedules()}
        return True if orphan not in listed else None

    await eventually(orphan_unlisted, seconds=10, what="the deleted orphan leaves the listing")

    async def settled() -> dict[str, int] | None:
        again = await scheduler_of(app).reconcile()
        return again if again == {"created": 0, "updated": 0, "deleted": 0} else None

    await eventually(settled, seconds=10, what="a second reconcile finds nothing to do", every=0.3)

    # A server reconciles when it starts: another orphan and a lost schedule, then a start.
    second_orphan = schedule_id(uuid.uuid4())
    await temporal_client.create_schedule(second_orphan, other_cron)
    await handle_of(temporal_client, in_step["id"]).delete()

    async def changes_listed() -> bool | None:
        listed = {e.id async for e in await temporal_client.list_schedules()}
        gone = schedule_id(uuid.UUID(in_step["id"])) not in listed
        return True if second_orphan in listed and gone else None

    await eventually(changes_listed, seconds=10, what="the changes by hand are listed")
    async with another_app(settings):
        pass
    assert not await schedule_exists(temporal_client, second_orphan)
    restored = await describe(temporal_client, in_step["id"])
    assert restored.schedule.state.paused is True
    assert_follows(restored, "0 11 * * *", "UTC")
    assert await schedule_exists(temporal_client, foreign)
    torale_ids = {
        e.id
        async for e in await temporal_client.list_schedules()
        if e.id.startswith(SCHEDULE_PREFIX)
    }
    expected = {missing, *(uuid.UUID(t["id"]) for t in (paused_behind, recron_behind, in_step))}
    assert torale_ids == {schedule_id(t) for t in expected}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database plays no part
async def test_reconcile_survives_an_orphan_deleted_meanwhile(
    app: FastAPI,
    alice: ApiUser,
    temporal_client: Client,
    temporal_task_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two servers starting together both reconcile: the orphan one deletes is gone when the
    other deletes it (NOT_FOUND). That is not a failure — and must not stop it from creating
    the missing schedules (its start only logs "reconcile skipped", so they stay missing)."""
    missing = await insert_task_directly(app, alice, schedule="0 8 * * *")
    orphan = schedule_id(uuid.uuid4())
    await temporal_client.create_schedule(
        orphan,
        Schedule(
            action=ScheduleActionStartWorkflow(
                WORKFLOW_NAME, id="x", task_queue=temporal_task_queue
            ),
            spec=ScheduleSpec(cron_expressions=["0 3 * * *"]),
        ),
    )

    async def listed() -> bool | None:
        return (
            True if orphan in {e.id async for e in await temporal_client.list_schedules()} else None
        )

    await eventually(listed, seconds=10, what="the orphan is listed")
    delete = ScheduleHandle.delete

    async def deleted_by_another_server_first(self: ScheduleHandle, **kwargs: Any) -> None:
        if self.id == orphan:
            await delete(temporal_client.get_schedule_handle(orphan))  # the other server wins
        await delete(self, **kwargs)

    monkeypatch.setattr(ScheduleHandle, "delete", deleted_by_another_server_first)
    await scheduler_of(app).reconcile()
    assert not await schedule_exists(temporal_client, orphan)
    assert_follows(await describe(temporal_client, missing), "0 8 * * *", "UTC")


# --- runs ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("temporal_worker", "newsroom")
async def test_scheduled_and_manual_runs_go_through_temporal(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, temporal_client: Client
) -> None:
    task = await new_task(
        client,
        alice,
        name="iPhone date",
        schedule="0 9 * * *",
        timezone="Europe/London",
        notify_behavior="always",
        notifications=[WEBHOOK],
    )

    # A slot of the schedule (triggered now) runs the engine and records the execution.
    await handle_of(temporal_client, task["id"]).trigger()
    scheduled = await finished_execution(app, task["id"], seconds=20)
    assert (scheduled.status, scheduled.trigger) == ("success", "schedule"), (
        scheduled.status,
        scheduled.error_message,
    )
    assert scheduled.result is not None
    assert scheduled.result["answer"] == MET["answer"]
    assert scheduled.condition_met is True
    async with session_scope(app.state.torale.sessions) as session:
        queued = list(
            await session.scalars(select(Delivery).where(Delivery.execution_id == scheduled.id))
        )
    assert [(d.channel_type, d.status) for d in queued] == [("webhook", "pending")]

    # Run-now on the Temporal backend: the answer waits for the workflow's outcome.
    response = await client.post(
        f"/api/v1/tasks/{task['id']}/execute?wait=true", headers=alice.headers
    )
    assert response.status_code == 200, response.text
    manual = response.json()
    assert (manual["status"], manual["trigger"]) == ("success", "manual"), manual
    assert manual["result"]["answer"] == MET["answer"]
    listing = (
        await client.get(f"/api/v1/tasks/{task['id']}/executions", headers=alice.headers)
    ).json()
    assert [e["id"] for e in listing["items"]] == [manual["id"], str(scheduled.id)]

    # The admin views list the schedule and both runs.
    scheduler = scheduler_of(app)
    views, total = await scheduler.schedules(limit=50, offset=0)
    assert total == 1
    [view] = views
    assert view.schedule_id == schedule_id(uuid.UUID(task["id"]))
    assert (view.task_id, view.user_id, view.task_name) == (
        uuid.UUID(task["id"]),
        alice.id,
        "iPhone date",
    )
    assert (view.cron, view.timezone, view.paused) == ("0 9 * * *", "Europe/London", False)
    assert view.next_run_times == fire_times("0 9 * * *", "Europe/London", 3)

    async def both_runs_listed() -> list[Any] | None:
        runs, _ = await scheduler.runs(limit=100, offset=0)
        mine = [r for r in runs if r.task_id == uuid.UUID(task["id"])]
        return mine if len(mine) == 2 and all(r.status == "completed" for r in mine) else None

    runs = await eventually(both_runs_listed, seconds=10, what="both runs in the admin view")
    assert any(manual["id"] in r.run_id for r in runs), runs
    assert all(r.started_at and r.closed_at for r in runs)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database plays no part
@pytest.mark.usefixtures("temporal_worker", "newsroom")
async def test_a_task_created_with_run_immediately_runs_now(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    """`run_immediately`: "make the first run due now instead of at the first cron time" — the
    local backend runs it at once; the Temporal one must not wait for the first cron time."""
    task = await new_task(client, alice, schedule="0 9 1 1 *", run_immediately=True)
    first = await finished_execution(app, task["id"], seconds=5)
    assert first.status == "success", first.error_message


@pytest.mark.usefixtures("temporal_worker", "newsroom")
async def test_a_task_its_run_completes_stops_being_scheduled(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, temporal_client: Client
) -> None:
    """A `once` task is completed by the run that notifies. Its schedule is "paused while the
    task is not active" (TemporalScheduler's contract); left running, every later slot runs
    the completed task again (a search and a model call each time)."""
    task = await new_task(client, alice, notify_behavior="once", notifications=[EMAIL])
    await handle_of(temporal_client, task["id"]).trigger()
    run = await finished_execution(app, task["id"], seconds=20)
    assert run.status == "success", run.error_message
    after = (await client.get(f"/api/v1/tasks/{task['id']}", headers=alice.headers)).json()
    assert after["state"] == "completed"

    async def closed() -> bool | None:
        workflows = await run_workflows_of(temporal_client, task["id"])
        done = workflows and all(w.status != WorkflowExecutionStatus.RUNNING for w in workflows)
        return True if done else None

    await eventually(closed, seconds=10, what="the run's workflow closed")
    description = await describe(temporal_client, task["id"])
    assert description.schedule.state.paused is True, "the completed task's schedule still fires"


# --- a worker killed in the middle of a run ------------------------------------------------


@pytest.fixture
def torale_workers(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    """Start `torale worker` processes (logs in the tmp dir); any left are stopped after."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(started) + 1}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "torale", "worker"],
                env=env,
                cwd=tmp_path,  # no stray .env is read
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    for log in sorted(tmp_path.glob("worker-*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "extra_settings",
    [
        # The dead run's lease (2 + 10 s) has passed when Temporal retries it (5 s of missed
        # heartbeats, then the retry backoff).
        pytest.param(
            {"run_timeout_seconds": 2, "temporal_heartbeat_seconds": 5},
            id="lease-shorter-than-heartbeat-timeout",
        ),
        # The lease (30 + 15 s) is still running then, as it is with the default run time
        # limit (180 s: a 270 s lease).
        pytest.param(
            {"run_timeout_seconds": 30, "temporal_heartbeat_seconds": 5},
            id="lease-longer-than-heartbeat-timeout",
        ),
    ],
)
async def test_a_worker_killed_mid_run_loses_the_run_but_nothing_else(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    temporal_client: Client,
    temporal_server: TemporalServer,
    temporal_task_queue: str,
    settings: Settings,
    fake_model: FakeOpenAI,
    fake_search: FakeSearxng,
    newsroom: str,
    torale_workers: Callable[[dict[str, str]], subprocess.Popen[bytes]],
    tmp_path: Path,
    extra_settings: dict[str, Any],
) -> None:
    """SIGKILL a `torale worker` while its run waits on the model; once heartbeats stop, a new
    worker retries the run (the same execution), the next slot runs, and nothing is notified
    twice — whether or not the dead run's lease has run out by then."""
    env = clean_env(
        tmp_path / "worker-data",
        {
            "TORALE_SCHEDULER": "temporal",
            "TORALE_TEMPORAL_ADDRESS": temporal_server.address,
            "TORALE_TEMPORAL_NAMESPACE": temporal_server.namespace,
            "TORALE_TEMPORAL_TASK_QUEUE": temporal_task_queue,
            "TORALE_DATABASE_URL": settings.effective_database_url,
            "TORALE_SECRET_KEY": "worker-test",
            "TORALE_MODEL": "fake-model",
            "TORALE_OPENAI_BASE_URL": fake_model.url + "/v1",
            "TORALE_SEARCH_PROVIDER": "searxng",
            "TORALE_SEARXNG_URL": fake_search.url,
            "TORALE_ALLOWED_NETWORKS": "127.0.0.1/32",
            "TORALE_RUN_TIMEOUT_SECONDS": str(extra_settings["run_timeout_seconds"]),
            "TORALE_TEMPORAL_HEARTBEAT_SECONDS": "5",
            "TORALE_RETRY_BACKOFF_SECONDS": "0.01",
            "TORALE_LOG_LEVEL": "info",
        },
    )
    assert settings.run_timeout_seconds == extra_settings["run_timeout_seconds"]  # app's too
    task = await new_task(
        client, alice, notify_behavior="track_state", notifications=[WEBHOOK, EMAIL]
    )
    # The first model call hangs (the worker dies during it); every later one answers at once.
    fake_model.script = sequence(Delay(30, ToolCall(MET)), MET)
    first = torale_workers(env)
    await handle_of(temporal_client, task["id"]).trigger()

    async def asked_the_model() -> bool | None:
        assert first.poll() is None, "the first worker exited"
        return True if fake_model.chat_requests else None

    await eventually(asked_the_model, seconds=30, what="the first worker's run asks the model")
    first.send_signal(signal.SIGKILL)
    first.wait(5)
    [killed] = await executions_of(app, task["id"])
    assert (killed.status, killed.trigger) == ("running", "schedule")

    torale_workers(env)

    async def slot_closed() -> Any | None:
        workflows = await run_workflows_of(temporal_client, task["id"])
        closed = [w for w in workflows if w.status != WorkflowExecutionStatus.RUNNING]
        return closed[0] if closed else None

    slot = await eventually(
        slot_closed, seconds=60, what="the killed slot's workflow ended", every=0.2
    )
    runs = [(e.status, e.error_message) for e in await executions_of(app, task["id"])]
    assert slot.status == WorkflowExecutionStatus.COMPLETED, (
        f"the killed slot's run was not retried: its workflow ended {slot.status.name}; "
        f"the task's executions: {runs}"
    )
    # The retry took over the dead attempt's execution (its id came back with the heartbeat
    # details) and ran it again to the end: one execution for the slot, not an orphan.
    [retried] = await executions_of(app, task["id"])
    assert retried.id == killed.id
    assert (retried.status, retried.trigger) == ("success", "schedule"), retried.error_message
    assert retried.condition_met is True

    # The next slot runs on the new worker.
    await handle_of(temporal_client, task["id"]).trigger()
    following = await finished_execution(app, task["id"], seconds=20, exclude={retried.id})
    assert (following.status, following.trigger) == ("success", "schedule")
    assert following.condition_met is True

    # The condition became met once: one delivery per channel, queued by the retried run.
    async with session_scope(app.state.torale.sessions) as session:
        deliveries = list(
            await session.scalars(select(Delivery).where(Delivery.task_id == killed.task_id))
        )
    assert sorted((d.execution_id, d.channel_index) for d in deliveries) == [
        (retried.id, 0),
        (retried.id, 1),
    ]


# --- a run that blocks the event loop right after its claim ---------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database plays no part
@pytest.mark.parametrize("extra_settings", [{"temporal_heartbeat_seconds": 2}])
@pytest.mark.parametrize("where", ["before-the-run", "in-the-run"])
@pytest.mark.usefixtures("newsroom")
async def test_a_run_that_blocks_past_the_heartbeat_timeout_is_taken_over_by_its_retry(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    temporal_client: Client,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """The first run of a worker imports the model libraries (seconds, blocking the event loop)
    right after its claim. Temporal's heartbeat timeout fires meanwhile and retries the run; the
    retry must take over the same execution, not find the task "still running" and fail the
    slot (AlreadyRunning is not retried), and the blocked attempt, when it wakes up, must not
    spoil the retry's run."""
    blocked: list[float] = []

    def block_once() -> None:
        if not blocked:
            blocked.append(time.monotonic())
            time.sleep(settings.temporal_heartbeat_seconds * 2.5)  # a blocking import

    if where == "before-the-run":
        real_run = engine_run.run_execution  # what the activity calls

        async def blocking_run(*args: Any, **kwargs: Any) -> uuid.UUID | None:
            block_once()
            return await real_run(*args, **kwargs)

        monkeypatch.setattr(activities_module, "run_execution", blocking_run)
    else:  # the execution is running: the engine claimed it, then reached the model
        real_perform = engine_run.perform_run

        async def blocking_perform(*args: Any, **kwargs: Any) -> Any:
            block_once()
            return await real_perform(*args, **kwargs)

        monkeypatch.setattr(engine_run, "perform_run", blocking_perform)
    state: AppState = app.state.torale
    task = await new_task(client, alice)
    worker = product_worker(temporal_client, settings, RunActivities(state.run_engine, None))
    async with worker:
        await handle_of(temporal_client, task["id"]).trigger()

        async def slot_closed() -> Any | None:
            workflows = await run_workflows_of(temporal_client, task["id"])
            closed = [w for w in workflows if w.status != WorkflowExecutionStatus.RUNNING]
            return closed[0] if closed else None

        slot = await eventually(slot_closed, seconds=30, what="the slot's workflow ended")
    assert blocked, "the run never started"
    runs = [(e.status, e.error_message) for e in await executions_of(app, task["id"])]
    assert slot.status == WorkflowExecutionStatus.COMPLETED, (
        f"the slot's workflow ended {slot.status.name}; the task's executions: {runs}"
    )
    [execution] = await executions_of(app, task["id"])
    assert (execution.status, execution.trigger) == ("success", "schedule"), runs


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_retry_finds_its_execution_when_no_heartbeat_got_through(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, newsroom: str
) -> None:
    """Even with no heartbeat details at all (the attempt was lost before its first heartbeat
    left the worker), the retry runs the execution its first attempt claimed; an execution that
    was there before the first attempt was scheduled is not taken for it."""
    state: AppState = app.state.torale
    activities = RunActivities(state.run_engine, state.scheduler)
    task = await new_task(client, alice, notify_behavior="always")  # stays active
    request = RunRequest(task_id=task["id"], trigger="schedule")
    scheduled = datetime.now(UTC)

    def attempt(number: int, scheduled_time: datetime) -> ActivityEnvironment:
        environment = ActivityEnvironment()
        environment.info = dataclasses.replace(
            environment.info, attempt=number, scheduled_time=scheduled_time, heartbeat_details=[]
        )
        return environment

    claimed = await attempt(1, scheduled).run(activities._claim, request)  # then lost
    assert claimed is not None
    done = await attempt(2, scheduled).run(activities.run_task, request)
    assert done == str(claimed[0])
    [execution] = await executions_of(app, task["id"])
    assert (execution.id, execution.status) == (claimed[0], "success")

    # A run of the task started before this slot's first attempt was scheduled is another
    # slot's (or run-now's): the overlap policy skips this one.
    other = await attempt(1, datetime.now(UTC)).run(activities._claim, request)
    assert other is not None
    later = datetime.now(UTC) + timedelta(minutes=1)
    with pytest.raises(ApplicationError) as refused:
        await attempt(2, later).run(activities.run_task, request)
    assert refused.value.type == "AlreadyRunning"


# --- creating a task holds no database lock across Temporal's round trip -------------------


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_create_waiting_on_temporal_holds_up_no_other_create(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While one create waits for Temporal, another create by the same owner goes through: the
    schedule is made before the task is written, so neither SQLite's writer nor the owner's row
    (the insert's trigger moves its tasks_version) is held across the round trip."""
    scheduler = scheduler_of(app)
    real_saved = scheduler.task_saved
    gate = asyncio.Event()
    held: list[uuid.UUID] = []

    async def slow_first(task: Task) -> None:
        if not held:
            held.append(task.id)
            await gate.wait()  # Temporal answering slowly
        await real_saved(task)

    monkeypatch.setattr(scheduler, "task_saved", slow_first)
    slow = asyncio.create_task(new_task(client, alice, name="Slow"))
    await eventually(lambda: asyncio.sleep(0, held or None), seconds=5, what="the slow create")
    fast = await asyncio.wait_for(new_task(client, alice, name="Fast"), 5)
    assert not slow.done()
    gate.set()
    first = await asyncio.wait_for(slow, 10)
    for task in (first, fast):
        assert await schedule_exists(temporal_client, schedule_id(uuid.UUID(task["id"])))
    assert await count_tasks(app) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_create_the_database_refuses_takes_its_schedule_back(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The schedule is made first; if the task then cannot be written, it is deleted again."""
    made: list[uuid.UUID] = []
    scheduler = scheduler_of(app)
    real_saved = scheduler.task_saved

    async def remember(task: Task) -> None:
        await real_saved(task)
        made.append(task.id)
        task.name = None  # type: ignore[assignment]  # NOT NULL: the insert fails

    monkeypatch.setattr(scheduler, "task_saved", remember)
    try:
        response = await client.post(
            "/api/v1/tasks", json={"search_query": "x"}, headers=alice.headers
        )
        status = response.status_code
    except Exception:  # the test transport may re-raise the 500's cause
        status = 500
    assert status >= 400  # refused (409: the constraint), not saved
    assert made
    assert not await schedule_exists(temporal_client, schedule_id(made[0]))
    assert await count_tasks(app) == 0
