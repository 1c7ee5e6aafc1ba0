"""The activity of the run workflow: one run of a task through the engine's run_execution.

The execution is claimed first and its id sent with every heartbeat, the first one before the
run begins. If the worker dies, Temporal retries the activity (on any worker) once heartbeats
stop, and the retry runs the same execution again instead of finding it "already running": it
reads the id back from the heartbeat details or, when no heartbeat got through (the event loop
was blocked right after the claim, e.g. by a first import of the model libraries), finds it in
the database — the task's active execution with this trigger, created since the activity was
first scheduled.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from torale.db import locks
from torale.db.database import session_scope
from torale.db.models import Task
from torale.engine.run import Engine, run_execution, skip_deactivated
from torale.executions import lifecycle
from torale.executions.service import active_execution
from torale.scheduling.base import Scheduler
from torale.scheduling.temporal.workflows import ACTIVITY_NAME, RunRequest
from torale.statuses import ExecutionStatus, TaskState, Trigger

_HEARTBEAT_FRACTION = 0.3  # of the heartbeat timeout
# Worker and Temporal server clocks may differ a little: an execution the first attempt created
# is looked for from this long before Temporal says it scheduled that attempt.
_CLOCK_SLACK = timedelta(seconds=5)


class RunActivities:
    def __init__(self, engine: Engine, scheduler: Scheduler | None = None) -> None:
        self.engine = engine
        self.scheduler = scheduler  # to pause the schedule of a task a run completed

    async def _claim(self, request: RunRequest) -> tuple[uuid.UUID, bool] | None:
        """The execution this attempt runs — run-now's, an earlier attempt's, or a new one —
        and whether its task may complete (a `once` task), so the schedule must follow."""
        engine = self.engine
        info = activity.info()
        details = info.heartbeat_details
        earlier = uuid.UUID(str(details[0])) if details else None
        wanted = uuid.UUID(request.execution_id) if request.execution_id else earlier
        task_id = uuid.UUID(request.task_id)
        trigger = Trigger(request.trigger)
        paused: list[Task] = []
        async with session_scope(engine.sessions, engine.write_lock) as session:
            owner = await locks.lock_task_owner(session, task_id)  # first: see db.locks
            if owner is not None and not owner[1]:
                # A deactivated account's task does not run, whatever its state says: its
                # queued run fails and its tasks are paused (their schedules too, below).
                paused = await skip_deactivated(
                    session, owner=owner[0], execution_id=wanted, now=datetime.now(UTC)
                )
        if owner is not None and not owner[1]:
            if self.scheduler is not None:
                for each in paused:
                    await self.scheduler.task_saved(each)
            return None
        async with session_scope(engine.sessions, engine.write_lock) as session:
            await locks.lock_task_owner(session, task_id)
            task = await session.get(Task, task_id)
            may_complete = task is not None and task.notify_behavior == "once"
            if wanted is None and info.attempt > 1 and task is not None:
                # No heartbeat reached Temporal before the earlier attempt was lost.
                found = await active_execution(session, task_id=task_id)
                if (
                    found is not None
                    and found.trigger == trigger
                    and found.created_at >= info.scheduled_time - _CLOCK_SLACK
                ):
                    wanted = found.id
            if wanted is not None:
                if info.attempt > 1:
                    await lifecycle.requeue(session, execution_id=wanted, lease=engine.lease)
                return wanted, may_complete
            if task is None and info.attempt == 1:
                # The API creates a task's schedule before it commits the task (no database
                # lock is held across Temporal's round trip), so a schedule triggered at once
                # can start this run a moment before the row is visible: look again later.
                raise ApplicationError(f"task {request.task_id} not found (yet)", type="NoTask")
            if task is None or task.state != TaskState.ACTIVE:
                return None  # deleted, paused or completed since the slot was planned
            execution, created = await lifecycle.start_execution(
                session,
                task_id=task.id,
                user_id=task.user_id,
                trigger=trigger,
                status=ExecutionStatus.PENDING,
                lease=engine.lease,
            )
        if not created:
            # Overlap policy "skip": this slot does not run while the previous run goes on.
            raise ApplicationError(
                f"task {request.task_id} is still running",
                type="AlreadyRunning",
                non_retryable=True,
            )
        return execution.id, may_complete

    @activity.defn(name=ACTIVITY_NAME)
    async def run_task(self, request: RunRequest) -> str | None:
        claimed = await self._claim(request)
        if claimed is None:
            return None
        execution_id, may_complete = claimed
        # The id goes out before the run starts: the run may block the event loop for a while
        # (its first import of the model libraries), and a retry needs the id to take over.
        activity.heartbeat(str(execution_id))

        async def beat() -> None:
            while True:
                await asyncio.sleep(request.heartbeat_seconds * _HEARTBEAT_FRACTION)
                activity.heartbeat(str(execution_id))

        beating = asyncio.create_task(beat())
        await asyncio.sleep(0)  # let the first heartbeat reach the SDK's core before the run
        run = asyncio.ensure_future(
            run_execution(
                self.engine,
                uuid.UUID(request.task_id),
                Trigger(request.trigger),
                execution_id=execution_id,
            )
        )
        try:
            await asyncio.shield(run)
        except asyncio.CancelledError:
            await _end_cancelled(run)
            raise
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        if may_complete:
            await self._follow_state(uuid.UUID(request.task_id))
        return str(execution_id)

    async def _follow_state(self, task_id: uuid.UUID) -> None:
        """A `once` task its run completed must not stay scheduled: pause its schedule."""
        if self.scheduler is None:
            return
        async with session_scope(self.engine.sessions) as session:
            task = await session.get(Task, task_id)
        if task is not None and task.state != TaskState.ACTIVE:
            await self.scheduler.task_saved(task)


async def _end_cancelled(run: asyncio.Future[uuid.UUID | None]) -> None:
    """This attempt was cancelled: stop its run — unless Temporal gave the attempt up (its
    heartbeats stopped reaching it, e.g. while the event loop was blocked). Its retry runs the
    same execution then, and cancelling this run would record it as interrupted under the
    retry's feet; left to finish, the first of the two to finish records the outcome and the
    other records nothing (the engine records only a running execution)."""
    details = activity.cancellation_details()
    given_up = details is not None and (details.timed_out or details.not_found)
    if not given_up:
        run.cancel()
    with contextlib.suppress(BaseException):  # the run records its own failures
        await run
