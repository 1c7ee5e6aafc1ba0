"""Snapshot queries for the API and the pages: an execution's sources, the diff between two
executions of a task, and which runs read something different from the run before. The caller
checks that the task is the user's; executions are looked up within it."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import Execution, ExecutionSource
from torale.errors import FieldValidationError, NotFoundError, field_error
from torale.statuses import ExecutionStatus
from torale.watch import snapshots
from torale.watch.diff import line_diff
from torale.watch.schemas import DiffRead, SourceDiff, SourceRead
from torale.watch.targets import Target


async def _execution_of(
    session: AsyncSession, *, task_id: uuid.UUID, execution_id: uuid.UUID
) -> Execution:
    execution = await session.scalar(
        select(Execution).where(Execution.id == execution_id, Execution.task_id == task_id)
    )
    if execution is None:
        raise NotFoundError("Execution not found")
    return execution


async def sources(
    session: AsyncSession, *, task_id: uuid.UUID, execution_id: uuid.UUID
) -> list[SourceRead]:
    await _execution_of(session, task_id=task_id, execution_id=execution_id)
    base = f"/api/v1/tasks/{task_id}/executions/{execution_id}/sources"
    return [
        SourceRead(
            url=source.url,
            selector=source.selector,
            title=source.title,
            content_hash=source.content_hash,
            size=size,
            screenshot=f"{base}/{source.position}/screenshot" if source.screenshot_hash else None,
        )
        for source, size, _ in await snapshots.sources_of(session, execution_id, with_text=False)
    ]


def _nothing_kept(execution: Execution, name: str) -> dict[str, Any]:
    """The error for an execution with no sources to compare."""
    if execution.status != ExecutionStatus.SUCCESS:
        message = (
            f"Execution {execution.id} did not succeed ({execution.status}): it kept no sources"
        )
        kind = "no_sources"
    else:
        message = (
            f"The snapshots of execution {execution.id} were pruned: runs keep what they read "
            "for the server's retention period (TORALE_SNAPSHOT_RETENTION_DAYS), and runs from "
            "before snapshots were kept have none"
        )
        kind = "snapshots_pruned"
    return field_error(["query", name], message, kind)


async def screenshot(
    session: AsyncSession, *, task_id: uuid.UUID, execution_id: uuid.UUID, position: int
) -> bytes:
    """The PNG kept for the source at `position` of an execution of the task; 404 without one."""
    await _execution_of(session, task_id=task_id, execution_id=execution_id)
    image = await snapshots.screenshot_of(session, execution_id, position)
    if not image:
        raise NotFoundError("Screenshot not found")
    return image


async def screenshots_of_runs(
    session: AsyncSession, *, task_id: uuid.UUID, execution_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[int, str]]]:
    """Which of the task's executions kept screenshots: each one's (position, URL) of the pages
    with one, in reading order; executions without any are left out."""
    if not execution_ids:
        return {}
    rows = await session.execute(
        select(ExecutionSource.execution_id, ExecutionSource.position, ExecutionSource.url)
        .join(Execution, Execution.id == ExecutionSource.execution_id)
        .where(
            Execution.task_id == task_id,
            ExecutionSource.execution_id.in_(execution_ids),
            ExecutionSource.screenshot_hash.is_not(None),
        )
        .order_by(ExecutionSource.execution_id, ExecutionSource.position)
    )
    found: dict[uuid.UUID, list[tuple[int, str]]] = {}
    for execution_id, position, url in rows:
        found.setdefault(execution_id, []).append((position, url))
    return found


async def _latest_with_sources(session: AsyncSession, task_id: uuid.UUID) -> list[uuid.UUID]:
    """The task's two newest executions that kept sources, newest first."""
    rows = await session.scalars(
        select(Execution.id)
        .where(
            Execution.task_id == task_id,
            exists().where(ExecutionSource.execution_id == Execution.id),
        )
        .order_by(Execution.created_at.desc(), Execution.id.desc())
        .limit(2)
    )
    return list(rows)


async def baseline(
    session: AsyncSession, *, task_id: uuid.UUID
) -> tuple[uuid.UUID, dict[str, str]] | None:
    """The task's latest execution that kept sources, and its texts by target key: what the
    task's next run compares with. None: nothing to compare with."""
    latest = await _latest_with_sources(session, task_id)
    if not latest:
        return None
    return latest[0], await snapshots.texts_of(session, latest[0])


async def diff(
    session: AsyncSession,
    *,
    task_id: uuid.UUID,
    from_id: uuid.UUID | None,
    to_id: uuid.UUID | None,
) -> DiffRead:
    """The diff from one execution's sources to another's; by default between the task's last
    two executions that kept sources (`from` alone: from it to the latest)."""
    if from_id is None or to_id is None:
        latest = await _latest_with_sources(session, task_id)
        if to_id is None:
            to_id = latest[0] if latest else None
        if from_id is None:
            from_id = next((e for e in latest if e != to_id), None)
        if from_id is None or to_id is None:
            raise FieldValidationError(
                [
                    field_error(
                        ["query", "from"],
                        "The task has fewer than two runs with sources to compare",
                        "not_enough_runs",
                    )
                ]
            )
    earlier = await _execution_of(session, task_id=task_id, execution_id=from_id)
    later = await _execution_of(session, task_id=task_id, execution_id=to_id)
    before = await snapshots.sources_of(session, from_id, with_text=True)
    after = await snapshots.sources_of(session, to_id, with_text=True)
    for execution, read, name in ((earlier, before, "from"), (later, after, "to")):
        if not read:
            raise FieldValidationError([_nothing_kept(execution, name)])
    old = {Target(s.url, s.selector).key: (s, t or "") for s, _, t in before}
    new = {Target(s.url, s.selector).key: (s, t or "") for s, _, t in after}
    items = []
    for key in dict.fromkeys([*old, *new]):
        was, now = old.get(key), new.get(key)
        source = (now or was)[0]  # type: ignore[index]
        target = Target(source.url, source.selector)
        lines = line_diff(was[1] if was else "", now[1] if now else "", label=target.label)
        items.append(
            SourceDiff(
                url=source.url,
                selector=source.selector,
                before_hash=was[0].content_hash if was else None,
                after_hash=now[0].content_hash if now else None,
                added=lines.added,
                removed=lines.removed,
                unified=lines.unified,
            )
        )
    return DiffRead(
        task_id=task_id,
        from_execution_id=from_id,
        to_execution_id=to_id,
        changed=any(i.added or i.removed for i in items),
        sources=items,
        unified="\n".join(i.unified for i in items if i.unified),
    )


async def changed_runs(
    session: AsyncSession, *, task_id: uuid.UUID, since: datetime
) -> dict[uuid.UUID, uuid.UUID]:
    """The task's runs created at or after `since` whose sources (URL, selector, text hash)
    differ from those of the run before them that kept sources: {run: that earlier run}. Two
    small queries whatever the history's length; no text is read."""
    with_sources = exists().where(ExecutionSource.execution_id == Execution.id)
    newer = list(
        await session.scalars(
            select(Execution.id)
            .where(Execution.task_id == task_id, Execution.created_at >= since, with_sources)
            .order_by(Execution.created_at, Execution.id)
        )
    )
    if not newer:
        return {}
    before = await session.scalar(
        select(Execution.id)
        .where(Execution.task_id == task_id, Execution.created_at < since, with_sources)
        .order_by(Execution.created_at.desc(), Execution.id.desc())
        .limit(1)
    )
    runs = ([before] if before is not None else []) + newer
    read: dict[uuid.UUID, list[tuple[str, str | None, str]]] = {run: [] for run in runs}
    rows = await session.execute(
        select(
            ExecutionSource.execution_id,
            ExecutionSource.url,
            ExecutionSource.selector,
            ExecutionSource.content_hash,
        )
        .where(ExecutionSource.execution_id.in_(runs))
        .order_by(ExecutionSource.execution_id, ExecutionSource.position)
    )
    for run, url, selector, digest in rows:
        read[run].append((url, selector, digest))
    return {
        later: earlier
        for earlier, later in itertools.pairwise(runs)
        if read[earlier] != read[later]
    }
