"""The activity of the run workflow: one call of the engine's run_execution."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from temporalio import activity
from temporalio.exceptions import ApplicationError

from torale.engine.run import AlreadyRunningError, Engine, run_execution
from torale.scheduling.temporal.workflows import ACTIVITY_NAME, RunRequest

_HEARTBEAT_SECONDS = 10.0


class RunActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name=ACTIVITY_NAME)
    async def run_task(self, request: RunRequest) -> str | None:
        # Heartbeats tell Temporal this worker is alive; if it dies, the activity times out
        # within the heartbeat timeout and is retried (on another worker).
        async def beat() -> None:
            while True:
                activity.heartbeat()
                await asyncio.sleep(_HEARTBEAT_SECONDS)

        beating = asyncio.create_task(beat())
        try:
            execution_id = await run_execution(
                self.engine,
                uuid.UUID(request.task_id),
                request.trigger,
                execution_id=uuid.UUID(request.execution_id) if request.execution_id else None,
            )
        except AlreadyRunningError as exc:
            # Overlap policy "skip": this slot does not run while the previous run goes on.
            raise ApplicationError(str(exc), type="AlreadyRunning", non_retryable=True) from exc
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        return str(execution_id) if execution_id else None
