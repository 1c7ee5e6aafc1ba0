"""What the actions (tasks.actions, executions.actions, admin.actions) need from the process
they run in, passed to them explicitly: the API routes build it from the app's state, and a
CLI command, an MCP server or a web page can build it from its own."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from torale.config import Settings
from torale.engine.run import Engine
from torale.scheduling.base import Scheduler
from torale.tasks.service import TaskPolicy

if TYPE_CHECKING:
    from fastapi import Request

    from torale.state import AppState


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    # SQLite only: every unit of work that writes holds it (see db.database.session_scope).
    write_lock: asyncio.Lock | None
    scheduler: Scheduler
    run_engine: Engine  # runs previews; its lease is a run's

    @cached_property
    def policy(self) -> TaskPolicy:
        """The operator settings task validation depends on."""
        return TaskPolicy.from_settings(self.settings)

    @classmethod
    def build(cls, run_engine: Engine, scheduler: Scheduler) -> Runtime:
        """From the process's run engine (which holds the settings, sessions and write lock)
        and its scheduler."""
        return cls(
            settings=run_engine.settings,
            sessions=run_engine.sessions,
            write_lock=run_engine.write_lock,
            scheduler=scheduler,
            run_engine=run_engine,
        )

    @classmethod
    def of_request(cls, request: Request) -> Runtime:
        """The API's: from the state of the app serving the request."""
        state: AppState = request.app.state.torale
        return cls.build(state.run_engine, state.scheduler)
