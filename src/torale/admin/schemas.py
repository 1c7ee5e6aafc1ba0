"""Admin responses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

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


class UserCounts(BaseModel):
    total: int
    active: int


class TaskCounts(BaseModel):
    total: int
    by_state: dict[str, int] = Field(description="active, paused, completed")
    condition_met: int


class ExecutionCounts(BaseModel):
    total: int
    succeeded: int
    failed: int
    success_rate: float | None = Field(description="succeeded / (succeeded + failed); null if none")


class PopularQuery(BaseModel):
    search_query: str
    tasks: int


class StatsRead(BaseModel):
    users: UserCounts
    tasks: TaskCounts
    executions_24h: ExecutionCounts
    popular_queries: list[PopularQuery] = Field(description="The 10 queries most tasks watch.")


class AdminTaskRead(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    owner_email: str | None
    name: str
    search_query: str
    condition_description: str
    schedule: str
    timezone: str
    state: str
    paused_reason: str | None
    condition_met: bool
    next_run: datetime | None
    created_at: datetime
    run_count: int
    last_run_at: datetime | None


class AdminExecutionRead(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID
    task_name: str
    user_id: uuid.UUID
    user_email: str | None
    status: str
    trigger: str
    created_at: datetime
    started_at: datetime
    completed_at: datetime | None
    condition_met: bool | None
    error_message: str | None
    notified: bool
    usage: dict[str, object]


class AdminErrorRead(BaseModel):
    kind: Literal["execution", "delivery"]
    id: uuid.UUID
    task_id: uuid.UUID
    task_name: str
    user_id: uuid.UUID
    user_email: str | None
    occurred_at: datetime | None
    error: str | None
    channel_type: str | None = Field(description="For deliveries: webhook, email or apprise.")


class AdminUserRead(BaseModel):
    id: uuid.UUID
    email: str | None
    first_name: str | None
    role: Literal["user", "admin"]
    is_active: bool
    created_at: datetime
    task_count: int
    active_task_count: int
    last_activity: datetime | None = Field(
        description="The latest of: an API key used, a run of one of their tasks."
    )


class AccountChange(BaseModel):
    user: AdminUserRead
    tasks_changed: int = Field(description="Tasks paused (deactivate) or resumed (activate).")
