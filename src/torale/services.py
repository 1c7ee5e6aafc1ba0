"""The long-lived objects background work needs, built once per process.

`torale worker` builds only these (the database, the run engine, the scheduler, the
notification dispatcher and snapshot pruning). The API process builds them and the web parts
on top of them (`state.AppState`: authentication, rate limits, the task-list cache, metrics).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from torale.config import Settings
from torale.db.database import create_engine, create_sessionmaker, dispose
from torale.engine.run import Engine
from torale.logs import slow_step
from torale.notify.dispatcher import Dispatcher
from torale.scheduling.base import Scheduler
from torale.scheduling.factory import build_scheduler
from torale.watch.retention import SnapshotPruner


@dataclass(kw_only=True)
class Services:
    settings: Settings
    database: AsyncEngine  # SQLAlchemy's engine; "engine" in Torale is the run engine
    sessions: async_sessionmaker[AsyncSession]
    # SQLite only: one writing unit of work at a time in this process (see session_scope).
    write_lock: asyncio.Lock | None
    run_engine: Engine
    scheduler: Scheduler
    dispatcher: Dispatcher
    pruner: SnapshotPruner
    # Whether this process runs the background work (scheduled runs, deliveries, pruning).
    dispatch: bool = True

    async def start_background(self) -> None:
        """Start what every process running background work runs, whichever scheduler: the
        notification dispatcher and snapshot pruning. (Scheduled runs are the scheduler's.)"""
        await self.dispatcher.start()
        await self.pruner.start()

    async def stop_background(self) -> None:
        await self.pruner.stop()
        await self.dispatcher.stop()

    async def close(self) -> None:
        """Release what these services hold (after the scheduler and dispatcher stopped)."""
        with slow_step("the run engine (HTTP clients, browser)"):
            await self.run_engine.close()
        with slow_step("the database connections"):
            await dispose(self.database)


def build_services(settings: Settings, *, dispatch: bool = True) -> Services:
    database = create_engine(
        settings.effective_database_url, timeout=settings.database_timeout_seconds
    )
    sessions = create_sessionmaker(database)
    write_lock = asyncio.Lock() if settings.is_sqlite else None
    run_engine = Engine.build(settings, sessions, write_lock)
    dispatcher = Dispatcher(settings, sessions, write_lock)
    run_engine.on_queued = dispatcher.wake
    return Services(
        settings=settings,
        database=database,
        sessions=sessions,
        write_lock=write_lock,
        run_engine=run_engine,
        scheduler=build_scheduler(settings, run_engine, dispatch=dispatch),
        dispatcher=dispatcher,
        pruner=SnapshotPruner(
            sessions, write_lock, retention_days=settings.snapshot_retention_days
        ),
        dispatch=dispatch,
    )
