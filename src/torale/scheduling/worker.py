"""`torale worker`: runs scheduled work without serving the API.

With the local backend it claims due runs from the database like `torale serve` does (any
number of workers share them). With Temporal it runs a Temporal worker for the RunTask workflow
and its activity, on `TORALE_TEMPORAL_TASK_QUEUE`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from torale.config import Settings
from torale.scheduling.temporal.activities import RunActivities
from torale.scheduling.temporal.scheduler import TemporalScheduler
from torale.scheduling.temporal.workflows import RunTaskWorkflow
from torale.services import build_services

logger = logging.getLogger("torale.worker")

# What the engine imports on its first run (pydantic-ai and the model SDK, the page reader):
# seconds of blocking imports. A worker loads them before it takes work, so no run blocks the
# event loop (heartbeats, other runs) while they load.
_ENGINE_IMPORTS = (
    "pydantic_ai",
    "pydantic_ai.models.openai",
    "pydantic_ai.providers.openai",
    "openai",
    "trafilatura",
)


def warm_engine_imports() -> float:
    """Import the engine's lazily imported libraries now; the seconds it took."""
    began = time.monotonic()
    for name in _ENGINE_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an optional extra not installed: the run will say so
            logger.debug("not preloaded: %s (%s)", name, exc)
    return time.monotonic() - began


def temporal_worker(client: Client, settings: Settings, activities: RunActivities) -> Worker:
    """The Temporal worker of a `torale worker` process.

    The workflow runs without Temporal's sandbox: RunTaskWorkflow is one `execute_activity`
    call on its input (no clock, randomness, I/O or module state) and its module imports only
    `dataclasses`, `datetime` and `temporalio`, so the sandbox has nothing to catch, while
    re-importing the module for every run cost the worker 10.4 instead of 5.7 ms of CPU per
    workflow (a no-op activity, measured on the 2-CPU reference machine). The tests run the
    same workflow in the default sandbox (the `temporal_worker` fixture of
    tests/scheduling/test_temporal.py), so a change that needs the sandbox fails there.
    """
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[RunTaskWorkflow],
        activities=[activities.run_task],
        max_concurrent_activities=settings.worker_concurrency,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    # Only what background work needs: none of the API's parts (key cache, rate limiter,
    # task-list cache, metrics).
    state = build_services(settings)
    await state.start_background()  # deliveries are sent, and snapshots pruned, by workers too
    try:
        took = await asyncio.to_thread(warm_engine_imports)
        logger.info("engine libraries loaded in %.1f s", took)
        scheduler = state.scheduler
        if isinstance(scheduler, TemporalScheduler):
            client = await scheduler.client()
            worker = temporal_worker(client, settings, RunActivities(state.run_engine, scheduler))
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
        await state.stop_background()
        await state.close()
