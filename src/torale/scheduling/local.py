"""The embedded scheduler: due runs are found in the database, claimed with leases, and run here.

Nothing lives only in memory. A task is due when it is active and its `next_run` has come. A
process claims due tasks in batches, one transaction per batch: it moves each one's `next_run`
to the next cron time after now (so a slot missed while nobody was running is run once, not once
per missed slot) with a conditional UPDATE that only one claimant can win, and creates the
execution as `pending` with a lease; the partial unique index on executions means a run that
would overlap the task's previous one is skipped. On PostgreSQL the due rows are read with FOR
UPDATE SKIP LOCKED, so any number of processes (`torale serve`, `torale worker`) share the work
without waiting on each other.

A process runs at most `concurrency` runs at once and holds at most as many claimed runs again,
waiting for a slot: a small local queue, so one look at the database feeds several runs and the
loop need not look again after every run. A queued run is already in the database (`pending`,
leased); its lease outlasts the wait, since every run ahead of it ends within the run time limit,
and a run starts only by moving its execution from pending to running, which one process can
do. The loop looks again when the queue has drained, when something may have become due (after
a short batching window, or at the earliest `next_run`), at least every `poll_seconds`, and at
once when this process saves a task.

If a process dies, its leases run out: a claimed run that never started is run by whichever
process sees it next (every few seconds each process looks for such runs); a run that died half
way is recorded as failed (it queued nothing: the notifications of a run are written with its
result, in one transaction). A process that stops cleanly hands its queued runs back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, func, select

from torale.db import locks
from torale.db.database import session_scope
from torale.db.models import Execution, Task
from torale.engine.run import Engine, run_execution
from torale.executions import lifecycle
from torale.scheduling.base import RunView, ScheduleView
from torale.statuses import ACTIVE_EXECUTION_STATUSES, TaskState, Trigger
from torale.tasks import transitions
from torale.tasks.schedule import next_run_after

logger = logging.getLogger("torale.scheduling")

# After a look that claimed some due runs but not a full batch, the loop waits this long before
# the next one, so runs falling due close together are claimed together (it adds at most this
# much to their start).
BATCH_WINDOW_SECONDS = 0.1
# Runs whose lease ran out are looked for at most this often (leases last minutes).
RECOVER_EVERY_SECONDS = 5.0

_tasks = cast("Table", Task.__table__)


async def claim_due_runs(
    engine: Engine, *, limit: int, now: datetime
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Claim up to `limit` due slots: (task id, pending execution id) for each one won."""
    if limit <= 0:
        return []
    async with session_scope(engine.sessions, engine.write_lock) as session:
        is_due = (_tasks.c.state == TaskState.ACTIVE, _tasks.c.next_run <= now)
        # Users before tasks (db.locks): whose tasks are due, then their rows, in id order,
        # then their due tasks. A claimant that waited here for another's users finds the due
        # tasks that one left, since it reads them after the wait.
        owners = (
            await session.execute(
                select(_tasks.c.user_id).where(*is_due).order_by(_tasks.c.next_run).limit(limit)
            )
        ).scalars()
        active = await locks.lock_users(session, owners)
        deactivated = [user for user, is_active in active.items() if not is_active]
        if deactivated:
            # A write that raced a deactivation left these active: paused, not run.
            paused = await transitions.pause_for_deactivation(
                session, user_ids=deactivated, now=now
            )
            logger.info(
                "paused %d tasks of deactivated accounts instead of running them", len(paused)
            )
        live = [user for user, is_active in active.items() if is_active]
        if not live:
            return []
        due = (
            select(
                _tasks.c.id,
                _tasks.c.user_id,
                _tasks.c.next_run,
                _tasks.c.schedule,
                _tasks.c.timezone,
            )
            .where(*is_due, _tasks.c.user_id.in_(live))
            .order_by(_tasks.c.next_run)
            .limit(limit)
        )
        if not engine.settings.is_sqlite:
            due = due.with_for_update(skip_locked=True, of=_tasks)
        rows = (await session.execute(due)).all()
        if not rows:
            return []
        slots = [transitions.DueSlot(r.id, r.next_run, r.schedule, r.timezone) for r in rows]
        won = await transitions.advance_due_slots(session, slots, now=now)
        started = await lifecycle.start_scheduled_executions(
            session,
            owners={row.id: row.user_id for row in rows if row.id in won},
            lease=engine.lease,
        )
        claimed = []
        for row in rows:
            if row.id not in won:
                continue  # another process claimed this slot first
            if row.id in started:
                claimed.append((row.id, started[row.id]))
            else:
                logger.info("task %s is still running; its %s run is skipped", row.id, row.next_run)
    return claimed


async def recover_expired(
    engine: Engine, *, limit: int, now: datetime
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Leases that ran out: fail runs that died half way; take over claimed runs not started."""
    async with session_scope(engine.sessions, engine.write_lock) as session:
        # Users before executions (db.locks): the owners of every run whose lease ran out.
        expired = await session.scalars(
            select(Execution.user_id)
            .where(
                Execution.status.in_(ACTIVE_EXECUTION_STATUSES), Execution.lease_expires_at < now
            )
            .distinct()
        )
        await locks.lock_users(session, expired)
        await lifecycle.fail_orphaned(session, now=now, started_only=True)
        return await lifecycle.take_over_expired(session, now=now, limit=limit, lease=engine.lease)


async def release_unstarted(engine: Engine, execution_ids: list[uuid.UUID]) -> None:
    """Let any process take over these claimed runs now (their leases end), if still pending."""
    if not execution_ids:
        return
    async with session_scope(engine.sessions, engine.write_lock) as session:
        await locks.lock_execution_owners(session, execution_ids)  # first: see db.locks
        await lifecycle.release_unstarted(
            session, execution_ids=execution_ids, now=datetime.now(UTC)
        )


class LocalScheduler:
    name = "local"

    def __init__(
        self, engine: Engine, *, concurrency: int, poll_seconds: float, dispatch: bool = True
    ) -> None:
        self.engine = engine
        self.concurrency = concurrency
        # Runs held at once: those running plus claimed ones waiting for a slot (at most one
        # more per slot, so none waits longer than the run ahead of it: see the module's doc).
        self.capacity = 2 * concurrency
        self.poll_seconds = poll_seconds
        self.dispatch = dispatch  # False: an API-only process (`--no-scheduler`)
        self._slots = asyncio.Semaphore(concurrency)
        self._runs: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._full = False  # the last look claimed all it could take: more may be due
        self._next_recovery = 0.0  # time.monotonic() of the next look for expired leases

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
        held = list(self._runs)
        runs = list(self._runs.values())
        for run in runs:
            run.cancel()
        for run in runs:
            with contextlib.suppress(asyncio.CancelledError):
                await run
        # Claimed runs that never started are still pending: hand them to the next process
        # now rather than when their leases run out.
        try:
            await release_unstarted(self.engine, held)
        except Exception:
            logger.warning("could not hand back %d claimed runs", len(held), exc_info=True)

    async def task_saved(self, task: Task) -> None:
        self._wake.set()  # next_run may have moved earlier

    async def task_deleted(self, task_id: uuid.UUID) -> None:
        self._wake.set()

    async def run_now(self, task_id: uuid.UUID, execution_id: uuid.UUID) -> None:
        self._spawn(task_id, execution_id, Trigger.MANUAL)

    async def wait(self, execution_id: uuid.UUID, within: float) -> None:
        run = self._runs.get(execution_id)
        if run is not None:
            await asyncio.wait({run}, timeout=within)

    # --- the loop --------------------------------------------------------------------------

    def _spawn(self, task_id: uuid.UUID, execution_id: uuid.UUID, trigger: Trigger) -> None:
        if execution_id in self._runs:
            return  # held here already (a lease of ours ran out while it waited)
        run = asyncio.create_task(
            self._run(task_id, execution_id, trigger), name=f"run {execution_id}"
        )
        self._runs[execution_id] = run

        def finished(_: asyncio.Task[None]) -> None:
            self._runs.pop(execution_id, None)
            if self._full and len(self._runs) <= self.concurrency:
                self._wake.set()  # the queue has drained: claim the next batch

        run.add_done_callback(finished)

    async def _run(self, task_id: uuid.UUID, execution_id: uuid.UUID, trigger: Trigger) -> None:
        async with self._slots:
            try:
                await run_execution(self.engine, task_id, trigger, execution_id=execution_id)
            except Exception:
                logger.exception(
                    "run %s of task %s could not be carried out", execution_id, task_id
                )

    async def _tick(self) -> float:
        """Recover, claim what is due; the seconds until the next look."""
        now = datetime.now(UTC)
        if time.monotonic() >= self._next_recovery:
            self._next_recovery = time.monotonic() + max(RECOVER_EVERY_SECONDS, self.poll_seconds)
            room = self.capacity - len(self._runs)
            for task_id, execution_id in await recover_expired(self.engine, limit=room, now=now):
                self._spawn(task_id, execution_id, Trigger.SCHEDULE)
        room = self.capacity - len(self._runs)
        claimed = await claim_due_runs(self.engine, limit=room, now=now)
        for task_id, execution_id in claimed:
            self._spawn(task_id, execution_id, Trigger.SCHEDULE)
        self._full = len(claimed) >= room
        if self._full:
            # Finishing runs wake the loop once the queue has drained (the poll is a backstop).
            return 0.0 if len(self._runs) <= self.concurrency else self.poll_seconds
        window = min(BATCH_WINDOW_SECONDS, self.poll_seconds)
        if claimed:
            return window  # more is likely to fall due at once: gather it for a moment
        async with session_scope(self.engine.sessions) as session:
            earliest: datetime | None = await session.scalar(
                select(func.min(_tasks.c.next_run)).where(_tasks.c.state == TaskState.ACTIVE)
            )
        if earliest is None:
            return self.poll_seconds
        until = (earliest - datetime.now(UTC)).total_seconds()
        return min(max(until, window), self.poll_seconds)

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
                select(func.count()).select_from(Task).where(Task.state != TaskState.COMPLETED)
            )
            rows = await session.scalars(
                select(Task)
                .where(Task.state != TaskState.COMPLETED)
                .order_by(Task.next_run.is_(None), Task.next_run, Task.id)
                .limit(limit)
                .offset(offset)
            )
            views = []
            for task in rows:
                times: list[datetime] = []
                if task.state == TaskState.ACTIVE and task.next_run is not None:
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
                        paused=task.state != TaskState.ACTIVE,
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
