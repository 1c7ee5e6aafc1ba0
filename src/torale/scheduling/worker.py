"""`torale worker`: runs scheduled work without serving the API.

With the local backend it claims due runs from the database like `torale serve` does (any
number of workers share them). With Temporal it runs a Temporal worker for the RunTask workflow
and its activity, on `TORALE_TEMPORAL_TASK_QUEUE`.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio.worker import Worker

from torale.app import build_state
from torale.config import Settings
from torale.scheduling.temporal.activities import RunActivities
from torale.scheduling.temporal.scheduler import TemporalScheduler
from torale.scheduling.temporal.workflows import RunTaskWorkflow

logger = logging.getLogger("torale.worker")


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    state = build_state(settings)
    await state.dispatcher.start()  # deliveries are sent by workers too
    try:
        scheduler = state.scheduler
        if isinstance(scheduler, TemporalScheduler):
            client = await scheduler.client()
            worker = Worker(
                client,
                task_queue=settings.temporal_task_queue,
                workflows=[RunTaskWorkflow],
                activities=[RunActivities(state.run_engine, scheduler).run_task],
                max_concurrent_activities=settings.worker_concurrency,
            )
            logger.info(
                "Temporal worker on %s, queue %s",
                settings.temporal_address,
                settings.temporal_task_queue,
            )
            async with worker:
                await stop.wait()
        else:
            logger.info("database worker: up to %s runs at once", settings.worker_concurrency)
            await scheduler.start()
            try:
                await stop.wait()
            finally:
                await scheduler.stop()
    finally:
        await state.dispatcher.stop()
        await state.run_engine.close()
        await state.rate_limiter.close()
        state.key_lookup.close()
        await state.engine.dispose()
