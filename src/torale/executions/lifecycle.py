"""Every change of an execution's status and lease, one function per transition.

    (start) ──► pending ──claim──► running ──succeed──► success
                   │  ▲              │
                   │  └──requeue─────┤
                   │                 └──fail──────────► failed
                   └──fail_unstarted───────────────────► failed
    pending/running whose lease passed ──fail_orphaned──► failed

A pending or running execution holds a lease (`lease_expires_at`); one whose lease has passed
belonged to a process that died. An execution that is finished (success or failed) holds none:
every transition into a finished status clears it. At most one execution per task is pending or
running (a partial unique index), which is what makes starting a run race-free. Functions here
write in the caller's unit of work and never commit.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import Execution, Task
from torale.executions.service import active_execution
from torale.statuses import ACTIVE_EXECUTION_STATUSES, ExecutionStatus, Trigger

PENDING, RUNNING = ExecutionStatus.PENDING, ExecutionStatus.RUNNING
SUCCESS, FAILED = ExecutionStatus.SUCCESS, ExecutionStatus.FAILED
ORPHANED = "Interrupted: the process running it stopped before it finished"

_executions = cast("Table", Execution.__table__)
_tasks = cast("Table", Task.__table__)


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind else "sqlite"


def _new_row(
    *,
    task_id: uuid.UUID,
    user_id: uuid.UUID,
    trigger: Trigger,
    status: ExecutionStatus,
    now: datetime,
    lease: timedelta,
) -> dict[str, Any]:
    if status not in ACTIVE_EXECUTION_STATUSES:
        raise ValueError(f"an execution starts pending or running, not {status}")
    return {
        "id": uuid.uuid4(),
        "task_id": task_id,
        "user_id": user_id,
        "status": status,
        "trigger": trigger,
        "created_at": now,
        "started_at": now,
        "lease_expires_at": now + lease,
        "grounding_sources": [],
        "usage": {},
    }


async def fail_orphaned(
    session: AsyncSession,
    *,
    now: datetime,
    task_ids: Collection[uuid.UUID] | None = None,
    started_only: bool = False,
) -> None:
    """Executions whose lease has passed (of these tasks, or all): failed as orphaned, their
    lease cleared. `started_only` leaves pending ones to be taken over (`take_over_expired`)."""
    statuses = (RUNNING,) if started_only else ACTIVE_EXECUTION_STATUSES
    statement = update(Execution).where(
        Execution.status.in_(statuses), Execution.lease_expires_at < now
    )
    if task_ids is not None:
        statement = statement.where(Execution.task_id.in_(list(task_ids)))
    await session.execute(
        statement.values(
            status=FAILED, error_message=ORPHANED, completed_at=now, lease_expires_at=None
        )
    )


async def start_execution(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    user_id: uuid.UUID,
    trigger: Trigger,
    status: ExecutionStatus,
    lease: timedelta,
) -> tuple[Execution, bool]:
    """A new pending/running execution of the task, or the one already active (and False).

    The partial unique index allows one active execution per task, so two requests or workers
    racing to start a run get the same one. The task's orphans are failed when one is in the
    way: a task without an active execution (the usual case) costs the INSERT … RETURNING
    and the task's `last_execution_id` only.
    """
    now = datetime.now(UTC)
    row = _new_row(
        task_id=task_id, user_id=user_id, trigger=trigger, status=status, now=now, lease=lease
    )
    statement = _start_statement(_dialect(session))
    values = {f"new_{key}": value for key, value in row.items()}
    execution = await session.scalar(statement, values)
    if execution is None:  # an active execution is there: an orphan, or a live run
        await fail_orphaned(session, now=now, task_ids=[task_id])
        execution = await session.scalar(statement, values)
    created = execution is not None
    if execution is None:
        execution = await active_execution(session, task_id=task_id)
        assert execution is not None, "an active execution exists after inserting one"
    else:
        await session.execute(_SET_LAST_EXECUTION, {"task": task_id, "execution": execution.id})
    return execution, created


@functools.cache
def _start_statement(dialect: str) -> Any:
    """`start_execution`'s INSERT … ON CONFLICT DO NOTHING RETURNING, built once per dialect
    (building it, with its values, cost more than running it)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    keys = _new_row(
        task_id=uuid.UUID(int=0),
        user_id=uuid.UUID(int=0),
        trigger=Trigger.MANUAL,
        status=PENDING,
        now=datetime.now(UTC),
        lease=timedelta(),
    )
    values: dict[str, Any] = {key: bindparam(f"new_{key}") for key in keys}
    return insert(Execution).values(values).on_conflict_do_nothing().returning(Execution)


_SET_LAST_EXECUTION = (
    update(_tasks)
    .where(_tasks.c.id == bindparam("task"))
    .values(last_execution_id=bindparam("execution"))
)


async def start_scheduled_executions(
    session: AsyncSession, *, owners: dict[uuid.UUID, uuid.UUID], lease: timedelta
) -> dict[uuid.UUID, uuid.UUID]:
    """`start_execution` for many tasks at once, as pending scheduled runs.

    `owners` maps task ids to their users' ids. Returns {task id: new execution id} for the
    tasks that got one; a task whose previous run is still active keeps it and gets none. The
    same rules as one at a time, in three statements however many tasks there are: orphans
    failed, one INSERT … ON CONFLICT DO NOTHING (the partial unique index decides), and the
    tasks' `last_execution_id` moved.
    """
    if not owners:
        return {}
    now = datetime.now(UTC)
    await fail_orphaned(session, now=now, task_ids=owners)
    insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    rows = [
        _new_row(
            task_id=task_id,
            user_id=user_id,
            trigger=Trigger.SCHEDULE,
            status=PENDING,
            now=now,
            lease=lease,
        )
        for task_id, user_id in owners.items()
    ]
    inserted = await session.execute(
        insert(_executions)
        .on_conflict_do_nothing()
        .returning(_executions.c.task_id, _executions.c.id),
        rows,
    )
    started: dict[uuid.UUID, uuid.UUID] = {task_id: id_ for task_id, id_ in inserted.all()}
    if started:
        await session.execute(
            _SET_LAST_EXECUTION, [{"task": t, "execution": e} for t, e in started.items()]
        )
    return started


async def claim_pending(
    session: AsyncSession, *, execution_id: uuid.UUID, now: datetime, lease: timedelta
) -> bool:
    """Pending → running, with a fresh lease; False if it is not pending any more (already
    run, or failed as orphaned). Only one process can win this."""
    claimed = await session.execute(
        _CLAIM_PENDING, {"execution": execution_id, "now": now, "lease_end": now + lease}
    )
    return getattr(claimed, "rowcount", 0) == 1


_CLAIM_PENDING = (
    update(_executions)
    .where(_executions.c.id == bindparam("execution"), _executions.c.status == PENDING)
    .values(status=RUNNING, started_at=bindparam("now"), lease_expires_at=bindparam("lease_end"))
)


def succeed(execution: Execution, *, now: datetime) -> None:
    """Running → success (the caller fills in the result). Only a running execution records
    an outcome: one failed as orphaned meanwhile stays failed."""
    if execution.status != RUNNING:
        raise ValueError(f"only a running execution succeeds, not a {execution.status} one")
    execution.status = SUCCESS
    execution.completed_at = now
    execution.lease_expires_at = None


async def fail(
    session: AsyncSession, *, execution_id: uuid.UUID, message: str, now: datetime
) -> None:
    """Running → failed, with the message the user sees (nothing if it is not running)."""
    await session.execute(
        update(Execution)
        .where(Execution.id == execution_id, Execution.status == RUNNING)
        .values(status=FAILED, error_message=message, completed_at=now, lease_expires_at=None)
    )


async def fail_unstarted(session: AsyncSession, *, execution_id: uuid.UUID, reason: str) -> None:
    """A pending execution that could not be handed to the scheduler: failed, with why."""
    await session.execute(
        update(Execution)
        .where(Execution.id == execution_id, Execution.status == PENDING)
        .values(
            status=FAILED,
            error_message=f"Could not be started: {reason}",
            completed_at=datetime.now(UTC),
            lease_expires_at=None,
        )
    )


async def requeue(session: AsyncSession, *, execution_id: uuid.UUID, lease: timedelta) -> bool:
    """Put an execution whose worker died back to pending, to run it again (the same id)."""
    moved = await session.execute(
        update(Execution)
        .where(Execution.id == execution_id, Execution.status.in_(ACTIVE_EXECUTION_STATUSES))
        .values(status=PENDING, lease_expires_at=datetime.now(UTC) + lease)
    )
    return bool(getattr(moved, "rowcount", 0))


async def take_over_expired(
    session: AsyncSession, *, now: datetime, limit: int, lease: timedelta
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Claimed runs that never started and whose lease ran out, up to `limit`, oldest first:
    their lease renewed for the caller, who runs them. (task id, execution id) of each."""
    if limit <= 0:
        return []
    stale = (
        select(_executions.c.id)
        .where(_executions.c.status == PENDING, _executions.c.lease_expires_at < now)
        .order_by(_executions.c.created_at)
        .limit(limit)
    )
    if _dialect(session) != "sqlite":
        stale = stale.with_for_update(skip_locked=True)
    candidates = list((await session.execute(stale)).scalars())
    if not candidates:
        return []
    # Conditional again: on SQLite another process may have taken one over since the read.
    renewed = await session.execute(
        update(_executions)
        .where(
            _executions.c.id.in_(candidates),
            _executions.c.status == PENDING,
            _executions.c.lease_expires_at < now,
        )
        .values(lease_expires_at=now + lease)
        .returning(_executions.c.task_id, _executions.c.id)
    )
    taken = {execution_id: task_id for task_id, execution_id in renewed.all()}
    return [(taken[e], e) for e in candidates if e in taken]


async def release_unstarted(
    session: AsyncSession, *, execution_ids: list[uuid.UUID], now: datetime
) -> None:
    """Let any process take over these claimed runs now (their leases end), if still pending."""
    if not execution_ids:
        return
    await session.execute(
        update(_executions)
        .where(_executions.c.id.in_(execution_ids), _executions.c.status == PENDING)
        .values(lease_expires_at=now)
    )
