"""The Scheduler protocol the services use, and what it reports to the admin views."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from torale.db.models import Task
from torale.errors import ServiceUnavailableError


class SchedulerUnavailableError(ServiceUnavailableError):
    """The scheduling backend refused or could not be reached: 503, and the API change is
    rolled back (the request's transaction has not committed yet)."""


@dataclass(frozen=True, slots=True)
class ScheduleView:
    schedule_id: str
    task_id: uuid.UUID
    user_id: uuid.UUID | None
    task_name: str | None
    cron: str | None
    timezone: str | None
    paused: bool
    next_run_times: list[datetime]


@dataclass(frozen=True, slots=True)
class RunView:
    run_id: str
    task_id: uuid.UUID | None
    execution_id: uuid.UUID | None
    status: str
    started_at: datetime | None
    closed_at: datetime | None


class Scheduler(Protocol):
    name: str

    @property
    def status(self) -> str:
        """What /health reports: "running", "disabled" (API-only), or a problem."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def task_saved(self, task: Task) -> None:
        """A task was created or changed (schedule, time zone, state). Raises
        SchedulerUnavailableError if the backend cannot follow, so the change is rolled back."""

    async def task_deleted(self, task_id: uuid.UUID) -> None: ...

    async def run_now(self, task_id: uuid.UUID, execution_id: uuid.UUID) -> None:
        """Run the pending execution `execution_id` of the task as soon as possible."""

    async def wait(self, execution_id: uuid.UUID, within: float) -> None:
        """Return when that run has finished, or after `within` seconds."""

    async def schedules(self, *, limit: int, offset: int) -> tuple[list[ScheduleView], int]: ...

    async def runs(self, *, limit: int, offset: int) -> tuple[list[RunView], int]: ...
