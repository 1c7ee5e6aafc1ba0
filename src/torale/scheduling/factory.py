"""The scheduler a process uses, chosen by `TORALE_SCHEDULER`."""

from __future__ import annotations

from torale.config import Settings
from torale.engine.run import Engine
from torale.scheduling.base import Scheduler
from torale.scheduling.local import LocalScheduler


def build_scheduler(settings: Settings, engine: Engine, *, dispatch: bool) -> Scheduler:
    """`dispatch=False` for an API-only process: it tells the backend about changes and
    runs run-now requests, but leaves scheduled runs to workers."""
    if settings.scheduler == "temporal":
        from torale.scheduling.temporal.scheduler import TemporalScheduler

        return TemporalScheduler(settings, engine)
    return LocalScheduler(
        engine,
        concurrency=settings.worker_concurrency,
        poll_seconds=settings.scheduler_poll_seconds,
        dispatch=dispatch,
    )
