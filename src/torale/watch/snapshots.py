"""Snapshots: the text of every source a successful run read, stored once per distinct text.

`snapshot_contents` holds each text once, keyed by its SHA-256 and zlib-compressed; a run adds
an `execution_sources` row per source pointing at its text, so runs of a page that does not
change cost a row each, not a copy. A page read with the browser may keep a screenshot, stored
the same way (`screenshot_hash`). `prune` removes the sources of runs older than the retention
(keeping each task's latest run with sources, the baseline the next run compares with, and the
latest run that read each of its URL targets) and the texts and screenshots nothing refers to
any more; `watch.retention` runs it where background work runs.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, exists, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import Execution, ExecutionSource, SnapshotContent, Task
from torale.statuses import ExecutionStatus
from torale.watch.targets import Target, targets_of


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A source as a run read it."""

    target: Target
    title: str
    text: str
    screenshot: bytes | None = None  # PNG, when the page was read with a browser and asked for

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_contents = cast("Table", SnapshotContent.__table__)
_sources = cast("Table", ExecutionSource.__table__)
# Statements a run executes, built once (building one cost more than running it).
_MARK_SEEN = (
    update(_contents)
    .where(_contents.c.hash.in_(bindparam("hashes", expanding=True)))
    .values(last_seen_at=bindparam("now"))
    .returning(_contents.c.hash)
)
_HASHES_OF = (
    select(_sources.c.url, _sources.c.selector, _sources.c.content_hash)
    .where(_sources.c.execution_id == bindparam("execution_id"))
    .order_by(_sources.c.position)
)


@functools.cache
def _insert_text(dialect: str) -> Any:
    """INSERT of a text, or (written meanwhile) its mark as seen now."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_contents).values(
        hash=bindparam("digest"),
        data=bindparam("data"),
        size=bindparam("size"),
        created_at=bindparam("now"),
        last_seen_at=bindparam("now"),
    )
    return statement.on_conflict_do_update(
        index_elements=["hash"], set_={"last_seen_at": statement.excluded.last_seen_at}
    )


async def store(
    session: AsyncSession,
    *,
    execution_id: uuid.UUID,
    snapshots: list[Snapshot],
    now: datetime,
) -> None:
    """Keep what a run read: each text (and screenshot) once, marked seen now; a source row
    per snapshot."""
    texts: dict[str, bytes] = {s.content_hash: s.text.encode() for s in snapshots}
    shots = {s: hashlib.sha256(s.screenshot).hexdigest() for s in snapshots if s.screenshot}
    texts.update({digest: s.screenshot for s, digest in shots.items() if s.screenshot})
    # Texts seen before (an unchanged page) are only marked seen: no compression, no copy.
    # Moving last_seen_at locks the row, so a prune running now leaves it.
    seen = set((await session.execute(_MARK_SEEN, {"hashes": list(texts), "now": now})).scalars())
    insert = _insert_text(session.bind.dialect.name if session.bind else "sqlite")
    for digest, raw in texts.items():
        if digest not in seen:
            values = {"digest": digest, "data": zlib.compress(raw, 6), "size": len(raw)}
            await session.execute(insert, {**values, "now": now})
    session.add_all(
        ExecutionSource(
            execution_id=execution_id,
            position=position,
            url=s.target.url,
            selector=s.target.selector,
            title=s.title,
            content_hash=s.content_hash,
            screenshot_hash=shots.get(s),
        )
        for position, s in enumerate(snapshots)
    )


def _text(data: bytes) -> str:
    return zlib.decompress(data).decode()


async def sources_of(
    session: AsyncSession, execution_id: uuid.UUID, *, with_text: bool
) -> list[tuple[ExecutionSource, int, str | None]]:
    """(source, text size, text if asked) of an execution's sources, in reading order."""
    columns: list[Any] = [ExecutionSource, SnapshotContent.size]
    if with_text:
        columns.append(SnapshotContent.data)
    rows = await session.execute(
        select(*columns)
        .join(SnapshotContent, SnapshotContent.hash == ExecutionSource.content_hash)
        .where(ExecutionSource.execution_id == execution_id)
        .order_by(ExecutionSource.position)
    )
    return [(row[0], row[1], _text(row[2]) if with_text else None) for row in rows]


async def screenshot_of(session: AsyncSession, execution_id: uuid.UUID, position: int) -> bytes:
    """The PNG kept for an execution's source at `position`, or b"" without one."""
    data = await session.scalar(
        select(SnapshotContent.data)
        .join(ExecutionSource, ExecutionSource.screenshot_hash == SnapshotContent.hash)
        .where(ExecutionSource.execution_id == execution_id, ExecutionSource.position == position)
    )
    return zlib.decompress(data) if data else b""


async def hashes_of(session: AsyncSession, execution_id: uuid.UUID) -> dict[str, str]:
    """The hashes of the texts an execution read, by target key (one statement, no text)."""
    rows = await session.execute(_HASHES_OF, {"execution_id": execution_id})
    return {Target(url, selector).key: digest for url, selector, digest in rows}


async def texts_by_hash(session: AsyncSession, hashes: set[str]) -> dict[str, str]:
    """The stored texts of these hashes, by hash."""
    rows = await session.execute(
        select(SnapshotContent.hash, SnapshotContent.data).where(
            SnapshotContent.hash.in_(list(hashes))
        )
    )
    return {digest: _text(data) for digest, data in rows}


async def texts_of(session: AsyncSession, execution_id: uuid.UUID) -> dict[str, str]:
    """The texts an execution read, by target key."""
    return {
        Target(source.url, source.selector).key: text or ""
        for source, _, text in await sources_of(session, execution_id, with_text=True)
    }


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one batch of pruning did."""

    runs: int  # runs whose sources were dropped
    texts: int  # texts deleted
    # Where the next batch starts (created_at, id of the last run looked at); None: none left.
    cursor: tuple[datetime, uuid.UUID] | None


async def _kept_runs(
    session: AsyncSession, candidates: list[Any], task_ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    """The candidates that must keep their sources: each task's newest run with sources (what
    the next run compares with), and the newest run that read each of the task's current URL
    targets (a target a later run could not read still has its last text)."""
    has_sources = exists().where(ExecutionSource.execution_id == Execution.id)
    newest = await session.execute(
        select(Execution.task_id, func.max(Execution.created_at))
        .where(Execution.task_id.in_(task_ids), has_sources)
        .group_by(Execution.task_id)
    )
    targets = {
        task_id: {t.key for t in targets_of(urls)}
        for task_id, urls in await session.execute(
            select(Task.id, Task.urls).where(Task.id.in_(task_ids))
        )
    }
    per_target = await session.execute(
        select(
            Execution.task_id,
            ExecutionSource.url,
            ExecutionSource.selector,
            func.max(Execution.created_at),
        )
        .join(ExecutionSource, ExecutionSource.execution_id == Execution.id)
        .where(Execution.task_id.in_(task_ids))
        .group_by(Execution.task_id, ExecutionSource.url, ExecutionSource.selector)
    )
    keep_times = {(task_id, at) for task_id, at in newest}
    for task_id, url, selector, at in per_target:
        if Target(url, selector).key in targets.get(task_id, ()):
            keep_times.add((task_id, at))
    return {row.id for row in candidates if (row.task_id, row.created_at) in keep_times}


async def prune(
    session: AsyncSession,
    *,
    now: datetime,
    retention: timedelta,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 500,
    sources: bool = True,
) -> Pruned:
    """One batch: drop the sources of up to `limit` runs that finished before the retention
    (oldest first, after `after`), except the runs `_kept_runs` keeps; then up to `limit` texts
    that no source refers to and no run has read since the retention began. `sources=False`
    (every old run looked at already) only deletes texts.

    It never waits for a row another transaction holds (PostgreSQL: SKIP LOCKED): a task being
    deleted keeps its rows for the cascade, and a text a run is reading again right now (its
    `last_seen_at` being moved) is left to that run.
    """
    cutoff = now - retention
    query = select(Execution.id, Execution.task_id, Execution.created_at).where(
        # Only successful runs keep sources: the status makes it an index range.
        Execution.status == ExecutionStatus.SUCCESS,
        Execution.created_at < cutoff,
        exists().where(ExecutionSource.execution_id == Execution.id),
    )
    if after is not None:
        query = query.where(tuple_(Execution.created_at, Execution.id) > tuple_(*after))
    candidates = (
        list(await session.execute(query.order_by(Execution.created_at, Execution.id).limit(limit)))
        if sources
        else []
    )
    doomed: list[uuid.UUID] = []
    if candidates:
        kept = await _kept_runs(session, candidates, {row.task_id for row in candidates})
        doomed = [row.id for row in candidates if row.id not in kept]
    if doomed:
        rows = (
            select(ExecutionSource.execution_id, ExecutionSource.position)
            .where(ExecutionSource.execution_id.in_(doomed))
            .with_for_update(skip_locked=True)
            .correlate(None)
        )
        await session.execute(
            delete(ExecutionSource).where(
                tuple_(ExecutionSource.execution_id, ExecutionSource.position).in_(rows)
            )
        )
    unreferenced = (
        select(SnapshotContent.hash)
        .where(
            SnapshotContent.last_seen_at < cutoff,
            ~exists().where(ExecutionSource.content_hash == SnapshotContent.hash),
            ~exists().where(ExecutionSource.screenshot_hash == SnapshotContent.hash),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
        .correlate(None)
    )
    result = await session.execute(
        delete(SnapshotContent).where(SnapshotContent.hash.in_(unreferenced))
    )
    last = candidates[-1] if len(candidates) == limit else None
    return Pruned(
        runs=len(doomed),
        texts=int(getattr(result, "rowcount", 0) or 0),
        cursor=(last.created_at, last.id) if last is not None else None,
    )
