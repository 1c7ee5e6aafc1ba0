"""The run workflow. Temporal replays workflow code in a sandbox, so this module stays free of
side effects and heavy imports: the work itself happens in the activity (activities.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

WORKFLOW_NAME = "RunTask"
ACTIVITY_NAME = "run_task"


@dataclass
class RunRequest:
    task_id: str
    trigger: str  # "schedule" | "manual"
    execution_id: str | None = None  # the pending execution run-now queued
    run_timeout_seconds: float = 180.0
    heartbeat_seconds: float = 30.0


@workflow.defn(name=WORKFLOW_NAME)
class RunTaskWorkflow:
    @workflow.run
    async def run(self, request: RunRequest) -> str | None:
        # The activity records failures of the run itself (search, model…) on the execution;
        # it only raises for failures of the worker or the database, which are worth a retry.
        result: str | None = await workflow.execute_activity(
            ACTIVITY_NAME,
            request,
            start_to_close_timeout=timedelta(seconds=request.run_timeout_seconds * 1.5 + 30),
            heartbeat_timeout=timedelta(seconds=request.heartbeat_seconds),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=2),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=60),
                maximum_attempts=3,
                non_retryable_error_types=["AlreadyRunning"],
            ),
        )
        return result
