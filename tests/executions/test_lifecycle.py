"""Execution status changes (executions.lifecycle) on SQLite and PostgreSQL.

Failing an orphaned run used to be written three times (the start of a run, the scheduler's
batch claim, the scheduler's recovery) and the copies drifted: only one cleared the lease. Each
way in is exercised here, and every test ends by checking the invariant they all keep: a
finished execution holds no lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.fixtures.users import ApiUser
from torale.db.engine import session_scope
from torale.db.models import Execution, Task
from torale.engine.run import Engine
from torale.executions import lifecycle
from torale.net import OutboundPolicy
from torale.scheduling.local import recover_expired
from torale.statuses import ACTIVE_EXECUTION_STATUSES, ExecutionStatus, Trigger
from torale.tasks import service as tasks_service
from torale.tasks.schemas import TaskCreate

PENDING, RUNNING = ExecutionStatus.PENDING, ExecutionStatus.RUNNING
POLICY = tasks_service.TaskPolicy(
    min_schedule_seconds=60, pages=OutboundPolicy(), notifications=OutboundPolicy(allow_http=False)
)
LONG_AGO = timedelta(hours=1)


def engine_of(app: FastAPI) -> Engine:
    engine: Engine = app.state.torale.run_engine
    return engine


async def new_task(app: FastAPI, user: ApiUser) -> uuid.UUID:
    async with session_scope(engine_of(app).sessions) as session:
        data = TaskCreate(
            search_query="query", config={"search_provider": "none"}, urls=["https://example.com/"]
        )
        task = await tasks_service.create_task(session, user_id=user.id, data=data, policy=POLICY)
        return task.id


async def orphan(
    app: FastAPI, user: ApiUser, task_id: uuid.UUID, status: ExecutionStatus
) -> uuid.UUID:
    """A pending or running execution of the task whose lease ran out an hour ago."""
    async with session_scope(engine_of(app).sessions) as session:
        execution, created = await lifecycle.start_execution(
            session,
            task_id=task_id,
            user_id=user.id,
            trigger=Trigger.SCHEDULE,
            status=status,
            lease=-LONG_AGO,
        )
        assert created
        return execution.id


async def execution_row(app: FastAPI, execution_id: uuid.UUID) -> Execution:
    async with session_scope(engine_of(app).sessions) as session:
        row = await session.get(Execution, execution_id)
        assert row is not None
        return row


async def assert_finished_hold_no_lease(app: FastAPI) -> None:
    async with session_scope(engine_of(app).sessions) as session:
        holding = await session.scalar(
            select(func.count())
            .select_from(Execution)
            .where(
                Execution.status.not_in(ACTIVE_EXECUTION_STATUSES),
                Execution.lease_expires_at.is_not(None),
            )
        )
    assert holding == 0


async def start_a_run(app: FastAPI, user: ApiUser, task_id: uuid.UUID) -> None:
    """Run-now's and the engine's way in: one new execution of the task."""
    async with session_scope(engine_of(app).sessions) as session:
        _, created = await lifecycle.start_execution(
            session,
            task_id=task_id,
            user_id=user.id,
            trigger=Trigger.MANUAL,
            status=PENDING,
            lease=timedelta(minutes=5),
        )
    assert created


async def start_scheduled_runs(app: FastAPI, user: ApiUser, task_id: uuid.UUID) -> None:
    """The embedded scheduler's batch claim."""
    async with session_scope(engine_of(app).sessions) as session:
        started = await lifecycle.start_scheduled_executions(
            session, owners={task_id: user.id}, lease=timedelta(minutes=5)
        )
    assert list(started) == [task_id]


async def recover(app: FastAPI, user: ApiUser, task_id: uuid.UUID) -> None:
    """The embedded scheduler's recovery (fails started runs only)."""
    await recover_expired(engine_of(app), limit=0, now=datetime.now(UTC))


WaysIn = Callable[[FastAPI, ApiUser, uuid.UUID], Awaitable[None]]


@pytest.mark.parametrize("way_in", [start_a_run, start_scheduled_runs, recover])
async def test_every_way_of_failing_an_orphaned_run_clears_its_lease(
    app: FastAPI, alice: ApiUser, way_in: WaysIn
) -> None:
    task_id = await new_task(app, alice)
    orphan_id = await orphan(app, alice, task_id, RUNNING)
    await way_in(app, alice, task_id)
    failed = await execution_row(app, orphan_id)
    assert failed.status == ExecutionStatus.FAILED
    assert failed.error_message == lifecycle.ORPHANED
    assert failed.completed_at is not None
    assert failed.lease_expires_at is None
    await assert_finished_hold_no_lease(app)


async def test_recovery_takes_over_unstarted_runs_and_a_new_start_fails_them(
    app: FastAPI, alice: ApiUser
) -> None:
    taken_over, replaced = await new_task(app, alice), await new_task(app, alice)
    waiting = await orphan(app, alice, taken_over, PENDING)
    await recover(app, alice, taken_over)
    assert (await execution_row(app, waiting)).status == PENDING  # limit 0: not taken yet
    async with session_scope(engine_of(app).sessions) as session:
        taken = await lifecycle.take_over_expired(
            session, now=datetime.now(UTC), limit=10, lease=timedelta(minutes=5)
        )
    assert taken == [(taken_over, waiting)]
    renewed = await execution_row(app, waiting)
    assert renewed.status == PENDING
    assert renewed.lease_expires_at is not None
    assert renewed.lease_expires_at > datetime.now(UTC)

    stale = await orphan(app, alice, replaced, PENDING)
    await start_a_run(app, alice, replaced)
    assert (await execution_row(app, stale)).status == ExecutionStatus.FAILED
    await assert_finished_hold_no_lease(app)


async def test_a_run_claims_succeeds_or_fails_only_from_the_right_status(
    app: FastAPI, alice: ApiUser
) -> None:
    task_id = await new_task(app, alice)
    now = datetime.now(UTC)
    lease = timedelta(minutes=5)
    async with session_scope(engine_of(app).sessions) as session:
        execution, _ = await lifecycle.start_execution(
            session,
            task_id=task_id,
            user_id=alice.id,
            trigger=Trigger.MANUAL,
            status=PENDING,
            lease=lease,
        )
    async with session_scope(engine_of(app).sessions) as session:
        assert await lifecycle.claim_pending(
            session, execution_id=execution.id, now=now, lease=lease
        )
        assert not await lifecycle.claim_pending(
            session, execution_id=execution.id, now=now, lease=lease
        )  # one claimant wins
        await lifecycle.fail_unstarted(session, execution_id=execution.id, reason="no")  # running
    async with session_scope(engine_of(app).sessions) as session:
        row = await session.get(Execution, execution.id)
        assert row is not None
        assert row.status == RUNNING
        lifecycle.succeed(row, now=now)
    done = await execution_row(app, execution.id)
    assert (done.status, done.completed_at, done.lease_expires_at) == (
        ExecutionStatus.SUCCESS,
        now,
        None,
    )
    async with session_scope(engine_of(app).sessions) as session:
        await lifecycle.fail(session, execution_id=execution.id, message="late", now=now)
        row = await session.get(Execution, execution.id)
        assert row is not None
        with pytest.raises(ValueError, match="only a running execution"):
            lifecycle.succeed(row, now=now)  # a finished run records nothing more
    assert (await execution_row(app, execution.id)).status == ExecutionStatus.SUCCESS
    async with session_scope(engine_of(app).sessions) as session:
        task = await session.get(Task, task_id)
        assert task is not None
        assert task.last_execution_id == execution.id
    await assert_finished_hold_no_lease(app)
