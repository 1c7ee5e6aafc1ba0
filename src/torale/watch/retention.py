"""Snapshot retention: `watch.snapshots.prune`, run every hour by each process that runs
background work (`torale serve` with its scheduler, every `torale worker`; not an API-only
`torale serve --no-scheduler`), with either scheduler backend.

Several such processes may share a database: a pass takes a transaction-scoped lock that other
processes do not wait for (they skip that pass), and a pass that does overlap another only does
work twice, since prune never waits for a row someone else holds. Each batch is its own short
transaction, so a large first pass does not hold SQLite's one writer for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from torale.db.database import session_scope
from torale.db.statements import try_exclusive
from torale.watch.snapshots import prune

logger = logging.getLogger("torale.watch")

# The first pass waits a little after start (start-up has work of its own), then one an hour.
FIRST_PASS_AFTER_SECONDS = 30.0
EVERY_SECONDS = 3600.0
BATCH = 500
LOCK_ID = 7_316_231_106  # the pruning pass (pg_try_advisory_xact_lock)


@dataclass(frozen=True, slots=True)
class PruneReport:
    runs: int  # runs whose snapshots were dropped
    texts: int  # stored texts deleted
    skipped: bool = False  # another process was pruning


async def prune_snapshots(
    sessions: async_sessionmaker[AsyncSession],
    write_lock: asyncio.Lock | None,
    *,
    retention: timedelta,
    now: datetime | None = None,
) -> PruneReport:
    """One pass over everything older than the retention, batch by batch."""
    now = now or datetime.now(UTC)
    runs = texts = 0
    cursor = None
    sources = True  # until every old run has been looked at; then only texts are left
    while True:
        async with session_scope(sessions, write_lock) as session:
            if not await try_exclusive(session, LOCK_ID):
                return PruneReport(runs, texts, skipped=True)
            batch = await prune(
                session, now=now, retention=retention, after=cursor, limit=BATCH, sources=sources
            )
        runs += batch.runs
        texts += batch.texts
        cursor = batch.cursor
        sources = cursor is not None
        if not sources and batch.texts < BATCH:
            return PruneReport(runs, texts)
        await asyncio.sleep(0)  # let other work have the database between batches


class SnapshotPruner:
    """Runs `prune_snapshots` every EVERY_SECONDS while started; off when the retention is 0."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        write_lock: asyncio.Lock | None,
        *,
        retention_days: float,
    ) -> None:
        self.sessions = sessions
        self.write_lock = write_lock
        self.retention = timedelta(days=retention_days) if retention_days > 0 else None
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def start(self) -> None:
        if self.retention is not None and self._loop_task is None:
            self._loop_task = asyncio.create_task(self._loop(), name="torale snapshot pruning")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None

    async def _loop(self) -> None:
        assert self.retention is not None
        await asyncio.sleep(FIRST_PASS_AFTER_SECONDS)
        while True:
            try:
                report = await prune_snapshots(
                    self.sessions, self.write_lock, retention=self.retention
                )
                if report.runs or report.texts:
                    logger.info(
                        "pruned the snapshots of %d runs (%d stored texts)",
                        report.runs,
                        report.texts,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("pruning snapshots failed; trying again in the next pass")
            await asyncio.sleep(EVERY_SECONDS)
