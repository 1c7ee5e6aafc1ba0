"""Every change of a task's state or of when it next runs, and the rules for them.

Whoever changes a task — its owner through the API, an admin deactivating an account, the
engine completing a `once` task, the embedded scheduler claiming a slot — does it with these
functions, so the fields always agree:

- `next_run` is set exactly while the task is active: the next cron time (or now, for a new
  task that runs immediately), None otherwise;
- `state_changed_at` moves with every change of state;
- `paused_reason` is set only while the task is paused by something other than its owner
  (account deactivation), and cleared by every other change of state.

What an owner may ask for is the table `OWNER_TRANSITIONS` (others are a 409). The system's own
transitions have their own preconditions: deactivation pauses active tasks, activation resumes
exactly the tasks deactivation paused, a run completes a task that notified once.

A deactivated account has no active task: deactivation pauses them (`pause_for_deactivation`),
and whatever finds one active anyway — the scheduler's claim, a run about to start — pauses it
the same way instead of running it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, case, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from torale.db.models import Task
from torale.errors import ConflictError
from torale.statuses import PausedReason, TaskState
from torale.tasks.schedule import next_run_after

ACTIVE, PAUSED, COMPLETED = TaskState.ACTIVE, TaskState.PAUSED, TaskState.COMPLETED

# (from, to) pairs an owner may move a task along; staying put is always allowed.
OWNER_TRANSITIONS: frozenset[tuple[TaskState, TaskState]] = frozenset(
    {(ACTIVE, PAUSED), (PAUSED, ACTIVE), (ACTIVE, COMPLETED), (COMPLETED, ACTIVE)}
)


def check_owner_transition(current: TaskState, target: TaskState) -> None:
    """409 unless an owner may move a task from `current` to `target`."""
    if target != current and (current, target) not in OWNER_TRANSITIONS:
        raise ConflictError(f"A {current} task cannot become {target}")


def _enter(task: Task, state: TaskState, *, now: datetime) -> None:
    task.state = state
    task.state_changed_at = now
    task.paused_reason = None
    task.next_run = next_run_after(task.schedule, task.timezone, now) if state == ACTIVE else None


def start(task: Task, state: TaskState, *, now: datetime, run_immediately: bool = False) -> None:
    """The state of a new task: active (first run at the first cron time after now, or now
    with `run_immediately`) or paused."""
    if state not in (ACTIVE, PAUSED):
        raise ConflictError(f"A new task cannot be {state}")
    _enter(task, state, now=now)
    if state == ACTIVE and run_immediately:
        task.next_run = now


def change_state(task: Task, target: TaskState, *, now: datetime) -> bool:
    """The owner asks for `target`: 409 unless the table allows it. Whether it changed."""
    check_owner_transition(task.state, target)
    if target == task.state:
        return False
    if target == ACTIVE:
        resume(task, now=now)
    elif target == PAUSED:
        pause(task, now=now)
    else:
        complete(task, now=now)
    return True


def pause(task: Task, *, now: datetime, reason: PausedReason | None = None) -> None:
    """Active → paused: no more scheduled runs. With `reason` the pause is the system's
    (deactivation), and `resume_paused_for` undoes exactly those pauses."""
    if task.state != ACTIVE:
        raise ConflictError(f"A {task.state} task cannot be paused")
    _enter(task, PAUSED, now=now)
    task.paused_reason = reason


async def pause_for_deactivation(
    session: AsyncSession, *, user_ids: Collection[uuid.UUID], now: datetime
) -> list[Task]:
    """Pause every active task of these (deactivated) accounts, with the reason, so that
    activation resumes exactly them; the tasks it paused. Account deactivation does it, and so
    does a scheduler that finds a deactivated account's task active (a write that raced the
    deactivation left it so). The caller holds the users' locks (`db.locks`)."""
    if not user_ids:
        return []
    active = await session.scalars(
        select(Task)
        .where(Task.user_id.in_(list(user_ids)), Task.state == ACTIVE)
        .order_by(Task.user_id, Task.id)
    )
    paused = list(active)
    for task in paused:
        pause(task, now=now, reason=PausedReason.ACCOUNT_DEACTIVATED)
    await session.flush()
    return paused


def resume(task: Task, *, now: datetime) -> bool:
    """Paused or completed → active; the next run is the next cron time after now. Whether
    it changed (an active task stays as it is)."""
    if task.state == ACTIVE:
        return False
    _enter(task, ACTIVE, now=now)
    return True


def resume_paused_for(task: Task, reason: PausedReason, *, now: datetime) -> bool:
    """Resume the task if the system paused it for `reason`; whether it did."""
    if task.state != PAUSED or task.paused_reason != reason:
        return False
    return resume(task, now=now)


def complete(task: Task, *, now: datetime) -> bool:
    """Active (or paused) → completed: a run notified a `once` task, or its owner is done with
    it. A run completes a task paused while it ran, too: its one notification has gone out.
    Whether it changed."""
    if task.state == COMPLETED:
        return False
    _enter(task, COMPLETED, now=now)
    return True


def reschedule(task: Task, *, now: datetime) -> None:
    """The schedule or time zone changed: an active task's next run is the new cron's next time
    after now (a paused or completed task has none)."""
    task.next_run = None
    if task.state == ACTIVE:
        task.next_run = next_run_after(task.schedule, task.timezone, now)


# --- the embedded scheduler's slots ------------------------------------------------------------

_tasks = cast("Table", Task.__table__)


@dataclass(frozen=True, slots=True)
class DueSlot:
    """A due task as a claimant read it: its `next_run` then, and its cron."""

    task_id: uuid.UUID
    next_run: datetime
    schedule: str
    timezone: str


async def advance_due_slots(
    session: AsyncSession, slots: Sequence[DueSlot], *, now: datetime
) -> set[uuid.UUID]:
    """Move each due task's `next_run` to its next cron time after now, in one conditional
    UPDATE; the ids of the tasks won.

    A task is won only if it is still active and its `next_run` is still the slot read, so of
    several claimants only one wins a slot (on SQLite the read is not locked). Slots missed
    while nobody was running coalesce into the one run this claim starts.
    """
    if not slots:
        return set()
    next_type = _tasks.c.next_run.type
    ids = [s.task_id for s in slots]
    slot = case(*((_tasks.c.id == s.task_id, literal(s.next_run, next_type)) for s in slots))
    # Tasks often share a schedule: work each (cron, zone) out once per batch.
    times: dict[tuple[str, str], datetime] = {}
    for s in slots:
        if (s.schedule, s.timezone) not in times:
            times[s.schedule, s.timezone] = next_run_after(s.schedule, s.timezone, now)
    following = case(
        *(
            (_tasks.c.id == s.task_id, literal(times[s.schedule, s.timezone], next_type))
            for s in slots
        )
    )
    won = await session.execute(
        update(_tasks)
        .where(_tasks.c.id.in_(ids), _tasks.c.state == ACTIVE, _tasks.c.next_run == slot)
        .values(next_run=following)
        .returning(_tasks.c.id)
    )
    return set(won.scalars())
