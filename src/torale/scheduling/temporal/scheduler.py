"""The Temporal scheduler: every task is a Temporal Schedule, every run a RunTask workflow.

A task's schedule (id `torale-task-<task id>`) carries its cron and time zone, overlap policy
"skip" and a catch-up window; it is paused while the task is not active. Task changes reach
Temporal inside the API request, before the database commits, so a refusal rolls the change
back (503). One client is opened per process and reused. On start the API reconciles: missing
schedules are created, drifted ones fixed, orphans deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from torale.config import Settings
from torale.db.database import session_scope
from torale.db.models import Task
from torale.engine.run import Engine
from torale.scheduling.base import RunView, SchedulerUnavailableError, ScheduleView
from torale.scheduling.temporal.workflows import WORKFLOW_NAME, RunRequest
from torale.statuses import TaskState, Trigger
from torale.tasks.schedule import next_run_after

logger = logging.getLogger("torale.scheduling")
SCHEDULE_PREFIX = "torale-task-"
RUN_PREFIX = "torale-run-"
_CONNECT_TIMEOUT = 5.0


def schedule_id(task_id: uuid.UUID) -> str:
    return f"{SCHEDULE_PREFIX}{task_id}"


def temporal_crons(expression: str) -> list[str]:
    """Temporal cron expressions that fire exactly when `expression` does for croniter.

    With both day-of-month and day-of-week restricted, cron (and croniter) fires on either;
    Temporal's calendar needs both. Two expressions, one per day field, give the union.
    """
    minute, hour, day, month, weekday = expression.split(" ")
    if day != "*" and weekday != "*":
        return [f"{minute} {hour} {day} {month} *", f"{minute} {hour} * {month} {weekday}"]
    return [expression]


def task_of(identifier: str) -> uuid.UUID | None:
    """The task id in a schedule id or a run's workflow id, if there is one."""
    for prefix in (SCHEDULE_PREFIX, RUN_PREFIX):
        if identifier.startswith(prefix):
            try:
                return uuid.UUID(identifier[len(prefix) : len(prefix) + 36])
            except ValueError:
                return None
    return None


class TemporalScheduler:
    name = "temporal"

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._client: Client | None = None
        self._connecting = asyncio.Lock()
        self._problem: str | None = None
        self._started: dict[uuid.UUID, WorkflowHandle[Any, Any]] = {}  # run-now, for wait()

    @property
    def status(self) -> str:
        if self._problem:
            return f"unavailable: {self._problem}"
        return "running (temporal)" if self._client else "not connected (temporal)"

    async def client(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._connecting:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(
                        Client.connect(
                            self.settings.temporal_address,
                            namespace=self.settings.temporal_namespace,
                        ),
                        _CONNECT_TIMEOUT,
                    )
                except (RPCError, OSError, TimeoutError, RuntimeError) as exc:
                    self._problem = f"cannot reach Temporal at {self.settings.temporal_address}"
                    raise SchedulerUnavailableError(
                        f"The scheduler is unavailable ({self._problem}); nothing was changed"
                    ) from exc
                self._problem = None
        return self._client

    async def start(self) -> None:
        try:
            await self.reconcile()
        except SchedulerUnavailableError as exc:
            # Serve anyway (reads keep working); changes to tasks answer 503 until it is back.
            logger.error("Temporal reconcile skipped: %s", exc)

    async def stop(self) -> None:
        self._client = None

    # --- schedules ---------------------------------------------------------------------------

    def _schedule(self, task: Task) -> Schedule:
        request = RunRequest(
            task_id=str(task.id),
            trigger=Trigger.SCHEDULE,
            run_timeout_seconds=self.settings.run_timeout_seconds,
            heartbeat_seconds=self.settings.temporal_heartbeat_seconds,
        )
        return Schedule(
            action=ScheduleActionStartWorkflow(
                WORKFLOW_NAME,
                request,
                id=f"{RUN_PREFIX}{task.id}",
                task_queue=self.settings.temporal_task_queue,
            ),
            spec=ScheduleSpec(
                cron_expressions=temporal_crons(task.schedule), time_zone_name=task.timezone
            ),
            policy=SchedulePolicy(
                overlap=ScheduleOverlapPolicy.SKIP,
                catchup_window=timedelta(seconds=self.settings.schedule_catchup_seconds),
            ),
            state=ScheduleState(paused=task.state != TaskState.ACTIVE, note=f"task {task.state}"),
        )

    async def task_saved(self, task: Task) -> None:
        client = await self.client()
        wanted = self._schedule(task)
        # A task due now (`run_immediately`) runs now, not at its first cron time.
        due_now = (
            task.state == TaskState.ACTIVE
            and task.next_run is not None
            and task.next_run <= datetime.now(UTC) + timedelta(seconds=1)
        )
        try:
            try:
                await client.create_schedule(
                    schedule_id(task.id), wanted, trigger_immediately=due_now
                )
                return
            except ScheduleAlreadyRunningError:
                pass

            async def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=wanted)

            handle = client.get_schedule_handle(schedule_id(task.id))
            await handle.update(replace)
            if due_now:
                await handle.trigger(overlap=ScheduleOverlapPolicy.SKIP)
        except RPCError as exc:
            raise SchedulerUnavailableError(
                f"Temporal refused the schedule of this task ({exc.message}); nothing was changed"
            ) from exc

    async def task_deleted(self, task_id: uuid.UUID) -> None:
        client = await self.client()
        try:
            await client.get_schedule_handle(schedule_id(task_id)).delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise SchedulerUnavailableError(
                    f"Temporal refused to delete this task's schedule ({exc.message})"
                ) from exc

    # --- run now -----------------------------------------------------------------------------

    async def run_now(self, task_id: uuid.UUID, execution_id: uuid.UUID) -> None:
        client = await self.client()
        request = RunRequest(
            task_id=str(task_id),
            trigger=Trigger.MANUAL,
            execution_id=str(execution_id),
            run_timeout_seconds=self.settings.run_timeout_seconds,
            heartbeat_seconds=self.settings.temporal_heartbeat_seconds,
        )
        try:
            self._started[execution_id] = await client.start_workflow(
                WORKFLOW_NAME,
                request,
                id=f"{RUN_PREFIX}{task_id}-now-{execution_id}",
                task_queue=self.settings.temporal_task_queue,
            )
        except RPCError as exc:
            raise SchedulerUnavailableError(f"Temporal refused the run ({exc.message})") from exc

    async def wait(self, execution_id: uuid.UUID, within: float) -> None:
        handle = self._started.pop(execution_id, None)
        if handle is None:
            return
        # The execution row tells the outcome; a failed or slow workflow just ends the wait.
        with contextlib.suppress(TimeoutError, WorkflowFailureError, RPCError):
            await asyncio.wait_for(handle.result(), within)

    # --- reconcile ---------------------------------------------------------------------------

    async def reconcile(self) -> dict[str, int]:
        """Make Temporal's schedules match the tasks: create, fix, delete. Counts what it did."""
        client = await self.client()
        existing: dict[uuid.UUID, tuple[bool, list[datetime]]] = {}
        orphans: list[str] = []
        tasks: dict[uuid.UUID, Task] = {}
        async with session_scope(self.engine.sessions) as session:
            for task in await session.scalars(select(Task)):
                tasks[task.id] = task
        try:
            async for entry in await client.list_schedules():
                task_id = task_of(entry.id)
                if task_id is None or not entry.id.startswith(SCHEDULE_PREFIX):
                    continue
                if task_id not in tasks:
                    orphans.append(entry.id)
                    continue
                paused = bool(entry.schedule and entry.schedule.state.paused)
                existing[task_id] = (
                    paused,
                    list(entry.info.next_action_times if entry.info else []),
                )
            done = {"created": 0, "updated": 0, "deleted": 0}
            for orphan in orphans:
                try:
                    await client.get_schedule_handle(orphan).delete()
                except RPCError as exc:
                    if exc.status != RPCStatusCode.NOT_FOUND:
                        raise
                    continue  # another server reconciling at the same time got there first
                done["deleted"] += 1
            for task_id, task in tasks.items():
                found = existing.get(task_id)
                if found is None:
                    await self.task_saved(task)
                    done["created"] += 1
                elif self._drifted(task, *found):
                    await self.task_saved(task)
                    done["updated"] += 1
        except RPCError as exc:
            raise SchedulerUnavailableError(f"Temporal reconcile failed ({exc.message})") from exc
        logger.info("Temporal schedules reconciled: %s", done)
        return done

    @staticmethod
    def _drifted(task: Task, paused: bool, next_times: list[datetime]) -> bool:
        """Paused when it should run (or the reverse), or firing off the task's cron."""
        if paused != (task.state != TaskState.ACTIVE):
            return True
        if paused or not next_times:
            return False
        previous = next_times[0] - timedelta(seconds=1)
        for fires_at in next_times[:3]:
            if next_run_after(task.schedule, task.timezone, previous) != fires_at:
                return True
            previous = fires_at
        return False

    # --- admin views -------------------------------------------------------------------------

    async def schedules(self, *, limit: int, offset: int) -> tuple[list[ScheduleView], int]:
        client = await self.client()
        entries = []
        try:
            async for entry in await client.list_schedules():
                if entry.id.startswith(SCHEDULE_PREFIX):
                    entries.append(entry)
        except RPCError as exc:
            raise SchedulerUnavailableError(f"Temporal is unavailable ({exc.message})") from exc
        entries.sort(key=lambda e: e.id)
        page = entries[offset : offset + limit]
        ids = [t for t in (task_of(e.id) for e in page) if t is not None]
        async with session_scope(self.engine.sessions) as session:
            rows = await session.scalars(select(Task).where(Task.id.in_(ids)))
            tasks = {t.id: t for t in rows}
        views = []
        for entry in page:
            task_id = task_of(entry.id)
            task = tasks.get(task_id) if task_id else None
            views.append(
                ScheduleView(
                    schedule_id=entry.id,
                    task_id=task_id or uuid.UUID(int=0),
                    user_id=task.user_id if task else None,
                    task_name=task.name if task else None,
                    cron=task.schedule if task else None,
                    timezone=task.timezone if task else None,
                    paused=bool(entry.schedule and entry.schedule.state.paused),
                    next_run_times=list(entry.info.next_action_times[:3] if entry.info else []),
                )
            )
        return views, len(entries)

    async def runs(self, *, limit: int, offset: int) -> tuple[list[RunView], int]:
        client = await self.client()
        views = []
        try:
            async for wf in client.list_workflows(
                f"WorkflowType = '{WORKFLOW_NAME}'", limit=offset + limit
            ):
                views.append(
                    RunView(
                        run_id=f"{wf.id}/{wf.run_id}",
                        task_id=task_of(wf.id),
                        execution_id=None,
                        status=wf.status.name.lower() if wf.status else "unknown",
                        started_at=wf.start_time,
                        closed_at=wf.close_time,
                    )
                )
            total = (await client.count_workflows(f"WorkflowType = '{WORKFLOW_NAME}'")).count
        except RPCError as exc:
            raise SchedulerUnavailableError(f"Temporal is unavailable ({exc.message})") from exc
        return views[offset:], total
