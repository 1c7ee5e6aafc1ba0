"""The embedded scheduler: due runs are found in the database, claimed with leases, and run here.

Nothing lives only in memory. A task is due when it is active and its `next_run` has come. A
process claims it in one transaction: it moves `next_run` to the next cron time after now (so a
slot missed while nobody was running is run once, not once per missed slot) with a conditional
UPDATE that only one claimant can win, and creates the execution as `pending` with a lease; the
partial unique index on executions means a run that would overlap the task's previous one is
skipped. On PostgreSQL the due rows are read with FOR UPDATE SKIP LOCKED, so any number of
processes (`torale serve`, `torale worker`) share the work without waiting on each other.

If a process dies, its leases run out: a claimed run that never started is run by whichever
process sees it next; a run that died half way is recorded as failed (it queued nothing: the
notifications of a run are written with its result, in one transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from torale.db.engine import session_scope
from torale.db.models import Execution, Task
from torale.engine.run import Engine, run_execution
from torale.executions.service import ORPHANED, start_execution
from torale.scheduling.base import RunView, ScheduleView
from torale.tasks.schedule import next_run_after

logger = logging.getLogger("torale.scheduling")


async def claim_due_runs(
    engine: Engine, *, limit: int, now: datetime
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Claim up to `limit` due slots: (task id, pending execution id) for each one won."""
    if limit <= 0:
        return []
    claimed = []
    async with session_scope(engine.sessions, engine.write_lock) as session:
        due = (
            select(Task.id, Task.user_id, Task.next_run, Task.schedule, Task.timezone)
            .where(Task.state == "active", Task.next_run <= now)
            .order_by(Task.next_run)
            .limit(limit)
        )
        if not engine.settings.is_sqlite:
            due = due.with_for_update(skip_locked=True, of=Task)
        rows = (await session.execute(due)).all()
        # Writing tasks moves their owners' tasks_version, which locks the users' rows: take
        # those locks in one order in every claimant, so two of them can never deadlock.
        for row in sorted(rows, key=lambda r: (r.user_id, r.id)):
            following = next_run_after(row.schedule, row.timezone, now)
            moved = await session.execute(
                update(Task)
                .where(Task.id == row.id, Task.state == "active", Task.next_run == row.next_run)
                .values(next_run=following)
            )
            if getattr(moved, "rowcount", 0) != 1:
                continue  # another process claimed this slot first
            execution, created = await start_execution(
                session,
                task_id=row.id,
                user_id=row.user_id,
                trigger="schedule",
                status="pending",
                lease=engine.lease,
            )
            if created:
                claimed.append((row.id, execution.id))
            else:
                logger.info("task %s is still running; its %s run is skipped", row.id, row.next_run)
    return claimed


async def recover_expired(
    engine: Engine, *, limit: int, now: datetime
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Leases that ran out: fail runs that died half way; take over claimed runs not started."""
    taken = []
    async with session_scope(engine.sessions, engine.write_lock) as session:
        await session.execute(
            update(Execution)
            .where(Execution.status == "running", Execution.lease_expires_at < now)
            .values(
                status="failed", error_message=ORPHANED, completed_at=now, lease_expires_at=None
            )
        )
        if limit <= 0:
            return []
        stale = (
            select(Execution.id, Execution.task_id)
            .where(Execution.status == "pending", Execution.lease_expires_at < now)
            .order_by(Execution.created_at)
            .limit(limit)
        )
        if not engine.settings.is_sqlite:
            stale = stale.with_for_update(skip_locked=True)
        for execution_id, task_id in (await session.execute(stale)).all():
            renewed = await session.execute(
                update(Execution)
                .where(
                    Execution.id == execution_id,
                    Execution.status == "pending",
                    Execution.lease_expires_at < now,
                )
                .values(lease_expires_at=now + engine.lease)
            )
            if getattr(renewed, "rowcount", 0) == 1:
                taken.append((task_id, execution_id))
    return taken


class LocalScheduler:
    name = "local"

    def __init__(
        self, engine: Engine, *, concurrency: int, poll_seconds: float, dispatch: bool = True
    ) -> None:
        self.engine = engine
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.dispatch = dispatch  # False: an API-only process (`--no-scheduler`)
        self._slots = asyncio.Semaphore(concurrency)
        self._runs: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        if not self.dispatch:
            return "disabled (API only)"
        if self._loop_task is None:
            return "not started"
        if self._loop_task.done():
            return "stopped"
        return "running"

    async def start(self) -> None:
        if self.dispatch and self._loop_task is None:
            self._loop_task = asyncio.create_task(self._loop(), name="torale scheduler")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        runs = list(self._runs.values())
        for run in runs:
            run.cancel()
        for run in runs:
            with contextlib.suppress(asyncio.CancelledError):
                await run

    async def task_saved(self, task: Task) -> None:
        self._wake.set()  # next_run may have moved earlier

    async def task_deleted(self, task_id: uuid.UUID) -> None:
        self._wake.set()

    async def run_now(self, task_id: uuid.UUID, execution_id: uuid.UUID) -> None:
        self._spawn(task_id, execution_id, "manual")

    async def wait(self, execution_id: uuid.UUID, within: float) -> None:
        run = self._runs.get(execution_id)
        if run is not None:
            await asyncio.wait({run}, timeout=within)

    # --- the loop --------------------------------------------------------------------------

    def _spawn(self, task_id: uuid.UUID, execution_id: uuid.UUID, trigger: str) -> None:
        run = asyncio.create_task(
            self._run(task_id, execution_id, trigger), name=f"run {execution_id}"
        )
        self._runs[execution_id] = run

        def finished(_: asyncio.Task[None]) -> None:
            self._runs.pop(execution_id, None)
            self._wake.set()  # a slot is free

        run.add_done_callback(finished)

    async def _run(self, task_id: uuid.UUID, execution_id: uuid.UUID, trigger: str) -> None:
        async with self._slots:
            try:
                await run_execution(self.engine, task_id, trigger, execution_id=execution_id)
            except Exception:
                logger.exception(
                    "run %s of task %s could not be carried out", execution_id, task_id
                )

    async def _tick(self) -> float:
        """Recover, dispatch what is due; the seconds until the next look."""
        now = datetime.now(UTC)
        free = self.concurrency - len(self._runs)
        for task_id, execution_id in await recover_expired(self.engine, limit=free, now=now):
            self._spawn(task_id, execution_id, "schedule")
        free = self.concurrency - len(self._runs)
        claimed = await claim_due_runs(self.engine, limit=free, now=now)
        for task_id, execution_id in claimed:
            self._spawn(task_id, execution_id, "schedule")
        if claimed and len(claimed) == free:
            return 0.0 if len(self._runs) < self.concurrency else self.poll_seconds
        async with session_scope(self.engine.sessions) as session:
            earliest = await session.scalar(
                select(func.min(Task.next_run)).where(Task.state == "active")
            )
        if earliest is None:
            return self.poll_seconds
        until = (earliest - datetime.now(UTC)).total_seconds()
        return min(max(until, 0.0), self.poll_seconds)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("scheduler tick failed; trying again")
                delay = self.poll_seconds
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    # --- admin views -------------------------------------------------------------------------

    async def schedules(self, *, limit: int, offset: int) -> tuple[list[ScheduleView], int]:
        async with session_scope(self.engine.sessions) as session:
            total = await session.scalar(
                select(func.count()).select_from(Task).where(Task.state != "completed")
            )
            rows = await session.scalars(
                select(Task)
                .where(Task.state != "completed")
                .order_by(Task.next_run.is_(None), Task.next_run, Task.id)
                .limit(limit)
                .offset(offset)
            )
            views = []
            for task in rows:
                times: list[datetime] = []
                if task.state == "active" and task.next_run is not None:
                    times = [task.next_run]
                    while len(times) < 3:
                        times.append(next_run_after(task.schedule, task.timezone, times[-1]))
                views.append(
                    ScheduleView(
                        schedule_id=f"task:{task.id}",
                        task_id=task.id,
                        user_id=task.user_id,
                        task_name=task.name,
                        cron=task.schedule,
                        timezone=task.timezone,
                        paused=task.state != "active",
                        next_run_times=times,
                    )
                )
        return views, int(total or 0)

    async def runs(self, *, limit: int, offset: int) -> tuple[list[RunView], int]:
        async with session_scope(self.engine.sessions) as session:
            total = await session.scalar(select(func.count()).select_from(Execution))
            rows = await session.scalars(
                select(Execution)
                .order_by(Execution.created_at.desc(), Execution.id.desc())
                .limit(limit)
                .offset(offset)
            )
            views = [
                RunView(
                    run_id=f"execution:{e.id}",
                    task_id=e.task_id,
                    execution_id=e.id,
                    status=e.status,
                    started_at=e.started_at,
                    closed_at=e.completed_at,
                )
                for e in rows
            ]
        return views, int(total or 0)
