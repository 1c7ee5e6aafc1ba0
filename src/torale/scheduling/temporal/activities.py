"""The activity of the run workflow: one run of a task through the engine's run_execution.

The execution is claimed first and its id sent with every heartbeat. If the worker dies,
Temporal retries the activity (on any worker) once heartbeats stop, and the retry reads that id
back and runs the same execution again, instead of finding it "already running".
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from temporalio import activity
from temporalio.exceptions import ApplicationError

from torale.db.engine import session_scope
from torale.db.models import Task
from torale.engine.run import Engine, run_execution
from torale.executions.service import requeue, start_execution
from torale.scheduling.base import Scheduler
from torale.scheduling.temporal.workflows import ACTIVITY_NAME, RunRequest

_HEARTBEAT_FRACTION = 0.3  # of the heartbeat timeout


class RunActivities:
    def __init__(self, engine: Engine, scheduler: Scheduler | None = None) -> None:
        self.engine = engine
        self.scheduler = scheduler  # to pause the schedule of a task a run completed

    async def _claim(self, request: RunRequest) -> uuid.UUID | None:
        """The execution this attempt runs: run-now's, an earlier attempt's, or a new one."""
        engine = self.engine
        details = activity.info().heartbeat_details
        earlier = uuid.UUID(str(details[0])) if details else None
        wanted = uuid.UUID(request.execution_id) if request.execution_id else earlier
        async with session_scope(engine.sessions, engine.write_lock) as session:
            if wanted is not None:
                if activity.info().attempt > 1:
                    await requeue(session, execution_id=wanted, lease=engine.lease)
                return wanted
            task = await session.get(Task, uuid.UUID(request.task_id))
            if task is None or task.state != "active":
                return None  # deleted, paused or completed since the slot was planned
            execution, created = await start_execution(
                session,
                task_id=task.id,
                user_id=task.user_id,
                trigger=request.trigger,
                status="pending",
                lease=engine.lease,
            )
        if not created:
            # Overlap policy "skip": this slot does not run while the previous run goes on.
            raise ApplicationError(
                f"task {request.task_id} is still running",
                type="AlreadyRunning",
                non_retryable=True,
            )
        return execution.id

    @activity.defn(name=ACTIVITY_NAME)
    async def run_task(self, request: RunRequest) -> str | None:
        execution_id = await self._claim(request)
        if execution_id is None:
            return None

        async def beat() -> None:
            while True:
                activity.heartbeat(str(execution_id))
                await asyncio.sleep(request.heartbeat_seconds * _HEARTBEAT_FRACTION)

        beating = asyncio.create_task(beat())
        try:
            await run_execution(
                self.engine, uuid.UUID(request.task_id), request.trigger, execution_id=execution_id
            )
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        await self._follow_state(uuid.UUID(request.task_id))
        return str(execution_id)

    async def _follow_state(self, task_id: uuid.UUID) -> None:
        """A `once` task its run completed must not stay scheduled: pause its schedule."""
        if self.scheduler is None:
            return
        async with session_scope(self.engine.sessions) as session:
            task = await session.get(Task, task_id)
        if task is not None and task.state != "active":
            await self.scheduler.task_saved(task)
