"""Admin responses."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class ScheduleRead(BaseModel):
    schedule_id: str = Field(description="`torale-task-<id>` (Temporal) or `task:<id>` (local).")
    task_id: uuid.UUID
    user_id: uuid.UUID | None
    task_name: str | None
    cron: str | None
    timezone: str | None
    paused: bool
    next_run_times: list[datetime]


class WorkflowRead(BaseModel):
    run_id: str = Field(description="Workflow id/run id (Temporal) or `execution:<id>` (local).")
    task_id: uuid.UUID | None
    execution_id: uuid.UUID | None
    status: str
    started_at: datetime | None
    closed_at: datetime | None
