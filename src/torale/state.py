"""What one running app holds: settings and the long-lived objects built from them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from torale.auth.jwt import JWTVerifier
from torale.auth.lookup import KeyLookup
from torale.auth.usage import KeyUsageRecorder
from torale.config import Settings
from torale.ratelimit import RateLimiter
from torale.tasks.list_cache import TaskListCache

if TYPE_CHECKING:
    from torale.engine.run import Engine
    from torale.metrics import Metrics
    from torale.notify.dispatcher import Dispatcher
    from torale.scheduling.base import Scheduler


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    rate_limiter: RateLimiter
    key_usage: KeyUsageRecorder
    jwt: JWTVerifier | None
    hashing_key: bytes
    key_lookup: KeyLookup
    task_lists: TaskListCache
    # SQLite only: one writing unit of work at a time in this process (see session_scope).
    write_lock: asyncio.Lock | None
    metrics: Metrics
    run_engine: Engine  # the monitoring engine (`engine` is the database's)
    scheduler: Scheduler
    dispatcher: Dispatcher
    # Whether this process runs the background work (scheduled runs, deliveries).
    dispatch: bool = True


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.torale
    return state
