"""The embedded scheduler on SQLite and PostgreSQL: claims, leases, coalescing, the loop."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlalchemy import func, select, update

import torale.scheduling.local as local_backend
from tests.fakes import FakeOpenAI, FakeWeb, sequence
from tests.fixtures.engine import (  # noqa: F401 - the engine's local fakes, as fixtures here
    NOT_MET,
    _fresh_fakes,
    extra_settings,
    fake_model,
    fake_search,
    fake_web,
    new_task,
    page,
    settings_overrides,
)
from tests.fixtures.users import ApiUser
from torale.db.database import session_scope
from torale.db.models import Execution, Task
from torale.engine.run import Engine, _claim
from torale.executions.lifecycle import ORPHANED, start_execution
from torale.scheduling.local import LocalScheduler, claim_due_runs, recover_expired
from torale.statuses import ExecutionStatus, Trigger
from torale.tasks.schedule import next_run_after

PENDING, RUNNING = ExecutionStatus.PENDING, ExecutionStatus.RUNNING


@pytest.fixture
def watched(fake_web: FakeWeb, fake_model: FakeOpenAI) -> dict[str, Any]:
    fake_web.set_page("/p", page("No date yet."))
    fake_model.script = sequence(NOT_MET)
    return {"urls": [fake_web.url + "/p"], "config": {"search_provider": "none"}}


async def set_next_run(app: FastAPI, task_id: str, when: datetime | None) -> None:
    async with app.state.torale.sessions() as session:
        await session.execute(
            update(Task).where(Task.id == uuid.UUID(task_id)).values(next_run=when)
        )
        await session.commit()


async def task_row(app: FastAPI, task_id: str) -> Task:
    async with app.state.torale.sessions() as session:
        task: Task | None = await session.get(Task, uuid.UUID(task_id))
        assert task is not None
        return task


async def executions_of(app: FastAPI, task_id: str) -> list[Execution]:
    async with app.state.torale.sessions() as session:
        rows = await session.scalars(
            select(Execution)
            .where(Execution.task_id == uuid.UUID(task_id))
            .order_by(Execution.created_at)
        )
        return list(rows)


async def test_a_due_slot_is_claimed_once_and_missed_slots_coalesce(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await new_task(client, alice, schedule="0 9 * * *", timezone="Europe/Berlin")
    now = datetime.now(UTC)
    await set_next_run(app, task["id"], now - timedelta(days=3))  # three slots missed
    engine = app.state.torale.run_engine
    claimed = await claim_due_runs(engine, limit=10, now=now)
    assert [t for t, _ in claimed] == [uuid.UUID(task["id"])]
    row = await task_row(app, task["id"])
    assert row.next_run == next_run_after("0 9 * * *", "Europe/Berlin", now)  # coalesced
    assert row.last_execution_id == claimed[0][1]
    [execution] = await executions_of(app, task["id"])
    assert (execution.status, execution.trigger) == ("pending", "schedule")
    assert execution.lease_expires_at is not None
    assert execution.lease_expires_at > now
    assert await claim_due_runs(engine, limit=10, now=now) == []


async def test_a_slot_that_would_overlap_is_skipped(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await new_task(client, alice)
    engine = app.state.torale.run_engine
    async with session_scope(engine.sessions) as session:
        running, _ = await start_execution(
            session,
            task_id=uuid.UUID(task["id"]),
            user_id=alice.id,
            trigger=Trigger.MANUAL,
            status=ExecutionStatus.RUNNING,
            lease=timedelta(minutes=5),
        )
    now = datetime.now(UTC)
    await set_next_run(app, task["id"], now - timedelta(minutes=1))
    assert await claim_due_runs(engine, limit=10, now=now) == []
    moved = (await task_row(app, task["id"])).next_run
    assert moved is not None
    assert moved > now  # the slot is gone, not retried
    assert [e.id for e in await executions_of(app, task["id"])] == [running.id]


async def test_only_active_tasks_are_due(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    paused = await new_task(client, alice, state="paused")
    done = await new_task(client, alice)
    await client.patch(
        f"/api/v1/tasks/{done['id']}", json={"state": "completed"}, headers=alice.headers
    )
    future = await new_task(client, alice)
    now = datetime.now(UTC)
    for task in (paused, done):
        await set_next_run(app, task["id"], now - timedelta(minutes=1))
    assert (await task_row(app, future["id"])).next_run not in (None, now)
    assert await claim_due_runs(app.state.torale.run_engine, limit=10, now=now) == []


async def test_concurrent_claimants_never_take_a_slot_twice(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, bob: ApiUser
) -> None:
    ids = []
    for i in range(30):
        ids.append((await new_task(client, alice if i % 2 else bob, name=f"t{i}"))["id"])
    now = datetime.now(UTC)
    async with app.state.torale.sessions() as session:
        await session.execute(update(Task).values(next_run=now - timedelta(seconds=30)))
        await session.commit()
    engine = app.state.torale.run_engine
    batches = await asyncio.gather(*(claim_due_runs(engine, limit=8, now=now) for _ in range(6)))
    claimed = [task_id for batch in batches for task_id, _ in batch]
    assert len(claimed) == len(set(claimed)) == 30
    async with app.state.torale.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Execution)) == 30


async def test_expired_leases(app: FastAPI, client: httpx.AsyncClient, alice: ApiUser) -> None:
    engine = app.state.torale.run_engine
    now = datetime.now(UTC)
    tasks = [await new_task(client, alice, name=f"t{i}") for i in range(3)]
    ids = {}
    async with session_scope(engine.sessions) as session:
        for task, status, lease in (
            (
                tasks[0],
                ExecutionStatus.PENDING,
                now - timedelta(seconds=1),
            ),  # claimed, its process died
            (tasks[1], RUNNING, now - timedelta(seconds=1)),  # died half way
            (tasks[2], RUNNING, now + timedelta(minutes=5)),  # alive
        ):
            execution, _ = await start_execution(
                session,
                task_id=uuid.UUID(task["id"]),
                user_id=alice.id,
                trigger=Trigger.SCHEDULE,
                status=status,
                lease=timedelta(0),
            )
            execution.lease_expires_at = lease
            ids[task["id"]] = execution.id
    taken = await recover_expired(engine, limit=10, now=now)
    assert taken == [(uuid.UUID(tasks[0]["id"]), ids[tasks[0]["id"]])]
    statuses = {t["id"]: (await executions_of(app, t["id"]))[0] for t in tasks}
    assert statuses[tasks[0]["id"]].status == "pending"
    renewed = statuses[tasks[0]["id"]].lease_expires_at
    assert renewed is not None
    assert renewed > now  # renewed for the new owner
    assert statuses[tasks[1]["id"]].status == "failed"
    assert statuses[tasks[1]["id"]].error_message == ORPHANED
    assert statuses[tasks[2]["id"]].status == "running"
    assert await recover_expired(engine, limit=10, now=now) == []


async def wait_until(check: Any, seconds: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("run_scheduler", [True])
async def test_the_loop_runs_a_new_task_at_once_with_run_immediately(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, watched: dict[str, Any]
) -> None:
    task = await new_task(client, alice, run_immediately=True, **watched)

    async def finished() -> list[Execution]:
        return [e for e in await executions_of(app, task["id"]) if e.status == "success"]

    [execution] = await wait_until(finished)
    assert execution.trigger == "schedule"
    row = await task_row(app, task["id"])
    assert row.next_run == next_run_after(row.schedule, row.timezone, execution.created_at)
    health = (await client.get("/health")).json()
    assert health["scheduler"] == "running"


@pytest.mark.parametrize("run_scheduler", [True])
async def test_a_run_missed_while_down_runs_once_on_start(
    settings: Any, client: httpx.AsyncClient, alice: ApiUser, app: FastAPI, watched: dict[str, Any]
) -> None:
    # The app (and its scheduler) is up; the task's slot three days ago was never run.
    task = await new_task(client, alice, **watched)
    await set_next_run(app, task["id"], datetime.now(UTC) - timedelta(days=3))
    await app.state.torale.scheduler.task_saved(await task_row(app, task["id"]))  # wake it

    async def finished() -> list[Execution]:
        return [e for e in await executions_of(app, task["id"]) if e.status == "success"]

    await wait_until(finished)
    await asyncio.sleep(1.5)  # more than a poll: nothing else becomes due
    assert len(await executions_of(app, task["id"])) == 1
    following = (await task_row(app, task["id"])).next_run
    assert following is not None
    assert following > datetime.now(UTC)


@pytest.mark.parametrize("run_scheduler", [True])
@pytest.mark.parametrize("extra_settings", [{"scheduler_poll_seconds": 0.2}])
async def test_a_task_runs_at_its_cron_time(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, watched: dict[str, Any]
) -> None:
    task = await new_task(client, alice, schedule="30 8 * * *", timezone="Asia/Tokyo", **watched)
    first = datetime.fromisoformat(task["next_run"])
    assert first.astimezone(UTC).hour == 23  # 08:30 in Tokyo
    await asyncio.sleep(0.5)
    assert await executions_of(app, task["id"]) == []  # not before its time
    with time_machine.travel(first + timedelta(seconds=1), tick=True):

        async def finished() -> list[Execution]:
            return [e for e in await executions_of(app, task["id"]) if e.status == "success"]

        [execution] = await wait_until(finished)
        assert execution.trigger == "schedule"
        row = await task_row(app, task["id"])
        assert row.next_run == first + timedelta(days=1)


@pytest.mark.parametrize("run_scheduler", [True])
async def test_a_paused_task_does_not_run(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, watched: dict[str, Any]
) -> None:
    task = await new_task(client, alice, **watched)
    await client.patch(
        f"/api/v1/tasks/{task['id']}", json={"state": "paused"}, headers=alice.headers
    )
    assert (await task_row(app, task["id"])).next_run is None
    await asyncio.sleep(1.5)
    assert await executions_of(app, task["id"]) == []


# --- batches and the local queue -------------------------------------------------------------


async def make_due(
    app: FastAPI, client: httpx.AsyncClient, users: list[ApiUser], count: int
) -> list[str]:
    """`count` tasks (owned in turn by `users`) due a minute ago, a second apart, oldest first."""
    ids = [
        (await new_task(client, users[i % len(users)], name=f"t{i}"))["id"] for i in range(count)
    ]
    now = datetime.now(UTC)
    for i, task_id in enumerate(ids):
        await set_next_run(app, task_id, now - timedelta(minutes=1) + timedelta(seconds=i))
    return ids


async def test_a_batch_claims_at_most_its_limit_earliest_first(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, bob: ApiUser
) -> None:
    ids = [uuid.UUID(i) for i in await make_due(app, client, [alice, bob], 12)]
    engine = app.state.torale.run_engine
    now = datetime.now(UTC)
    first = await claim_due_runs(engine, limit=5, now=now)
    assert sorted(t for t, _ in first) == sorted(ids[:5])  # the oldest slots
    rest = await claim_due_runs(engine, limit=100, now=now)
    assert sorted(t for t, _ in rest) == sorted(ids[5:])
    assert await claim_due_runs(engine, limit=100, now=now) == []
    for task_id, execution_id in first + rest:
        row = await task_row(app, str(task_id))
        assert row.next_run is not None
        assert row.next_run > now
        assert row.last_execution_id == execution_id
        [execution] = await executions_of(app, str(task_id))
        assert (execution.id, execution.status, execution.trigger) == (
            execution_id,
            "pending",
            "schedule",
        )


class StubRuns:
    """`run_execution` for the loop tests: claims like a run, waits, records success; counts."""

    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self.gate: asyncio.Event | None = None
        self.running = 0
        self.most = 0
        self.started: list[uuid.UUID] = []

    async def __call__(
        self,
        engine: Engine,
        task_id: uuid.UUID,
        trigger: Trigger,
        *,
        execution_id: uuid.UUID | None = None,
    ) -> uuid.UUID | None:
        claimed = await _claim(engine, task_id, trigger, execution_id)
        if claimed is None:
            return None
        self.running += 1
        self.most = max(self.most, self.running)
        self.started.append(claimed.execution_id)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.hold)
        except asyncio.CancelledError:
            await asyncio.shield(self.record(engine, claimed.execution_id, "failed"))
            raise
        finally:
            self.running -= 1
        await self.record(engine, claimed.execution_id, "success")
        return claimed.execution_id

    @staticmethod
    async def record(engine: Engine, execution_id: uuid.UUID, status: str) -> None:
        async with session_scope(engine.sessions, engine.write_lock) as session:
            await session.execute(
                update(Execution)
                .where(Execution.id == execution_id)
                .values(status=status, completed_at=datetime.now(UTC), lease_expires_at=None)
            )


async def test_the_loop_claims_in_batches_within_its_concurrency_and_runs_each_slot_once(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await make_due(app, client, [alice], 40)
    stub = StubRuns(hold=0.02)
    monkeypatch.setattr(local_backend, "run_execution", stub)
    claims: list[int] = []
    real_claim = local_backend.claim_due_runs

    async def counting_claim(engine: Engine, *, limit: int, now: datetime) -> Any:
        claimed = await real_claim(engine, limit=limit, now=now)
        claims.append(len(claimed))
        assert limit <= scheduler.capacity - len(scheduler._runs) + len(claimed)
        return claimed

    monkeypatch.setattr(local_backend, "claim_due_runs", counting_claim)
    scheduler = LocalScheduler(app.state.torale.run_engine, concurrency=3, poll_seconds=0.2)
    await scheduler.start()
    try:

        async def all_done() -> bool:
            async with app.state.torale.sessions() as session:
                done: int | None = await session.scalar(
                    select(func.count()).select_from(Execution).where(Execution.status == "success")
                )
            return done == len(ids)

        await wait_until(all_done)
        await asyncio.sleep(0.5)  # more looks: nothing runs again
    finally:
        await scheduler.stop()
    assert stub.most <= 3  # never more than `concurrency` runs at once
    assert max(claims) == scheduler.capacity == 6  # a batch fills running + queue
    assert len(stub.started) == len(set(stub.started)) == len(ids)
    async with app.state.torale.sessions() as session:
        rows = (await session.execute(select(Execution.task_id, Execution.status))).all()
    assert sorted(str(t) for t, _ in rows) == sorted(ids)  # one execution per task
    assert {s for _, s in rows} == {"success"}


async def test_stopping_hands_queued_runs_back_and_recovery_takes_them(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await make_due(app, client, [alice], 4)
    stub = StubRuns()
    stub.gate = asyncio.Event()  # runs wait until the end of the test
    monkeypatch.setattr(local_backend, "run_execution", stub)
    engine = app.state.torale.run_engine
    scheduler = LocalScheduler(engine, concurrency=1, poll_seconds=0.2)
    await scheduler.start()

    async def two_held() -> bool:
        return len(scheduler._runs) == 2 and len(stub.started) == 1

    await wait_until(two_held)  # one running, one claimed and queued, two still due
    [queued] = [e for e in scheduler._runs if e not in stub.started]
    await scheduler.stop()
    async with app.state.torale.sessions() as session:
        rows = (await session.execute(select(Execution.id, Execution.status))).all()
        statuses = {execution_id: status for execution_id, status in rows}
        assert statuses == {stub.started[0]: "failed", queued: "pending"}  # interrupted; queued
        execution = await session.get(Execution, queued)
        assert execution is not None
        assert execution.lease_expires_at is not None
        assert execution.lease_expires_at <= datetime.now(UTC)  # handed back
    # Another process (here: a fresh scheduler) takes it over and runs it, then the others.
    stub.gate.set()
    monkeypatch.setattr(local_backend, "RECOVER_EVERY_SECONDS", 0.1)
    other = LocalScheduler(engine, concurrency=2, poll_seconds=0.2)
    await other.start()
    try:

        async def all_ran() -> bool:
            async with app.state.torale.sessions() as session:
                done: int | None = await session.scalar(
                    select(func.count()).select_from(Execution).where(Execution.status == "success")
                )
            return done == 3  # the queued one and the two that were still due

        await wait_until(all_ran)
    finally:
        await other.stop()
    assert queued in stub.started[1:]
    assert len(stub.started) == len(set(stub.started)) == 4
    del ids


async def test_the_loop_recovers_expired_leases_while_it_runs(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = StubRuns()
    monkeypatch.setattr(local_backend, "run_execution", stub)
    monkeypatch.setattr(local_backend, "RECOVER_EVERY_SECONDS", 0.3)
    engine = app.state.torale.run_engine
    scheduler = LocalScheduler(engine, concurrency=2, poll_seconds=0.2)
    await scheduler.start()
    try:
        await asyncio.sleep(0.5)  # the loop is up and has looked once
        tasks = [await new_task(client, alice, name=f"t{i}") for i in range(2)]
        ids = {}
        async with session_scope(engine.sessions) as session:
            for task, status in (
                (tasks[0], ExecutionStatus.PENDING),
                (tasks[1], ExecutionStatus.RUNNING),
            ):
                execution, _ = await start_execution(
                    session,
                    task_id=uuid.UUID(task["id"]),
                    user_id=alice.id,
                    trigger=Trigger.SCHEDULE,
                    status=status,
                    lease=timedelta(0),
                )
                execution.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)
                ids[status] = execution.id

        async def recovered() -> bool:
            async with app.state.torale.sessions() as session:
                rows = (await session.execute(select(Execution.id, Execution.status))).all()
            found = {execution_id: status for execution_id, status in rows}
            return found == {ids[PENDING]: "success", ids[RUNNING]: "failed"}

        await wait_until(recovered, seconds=10)
    finally:
        await scheduler.stop()
    assert stub.started == [ids[PENDING]]
