"""Task state changes (tasks.transitions): the owner's table and the system's transitions keep
`state`, `next_run`, `state_changed_at` and `paused_reason` in agreement."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from torale.db.models import Task
from torale.errors import ConflictError
from torale.statuses import PausedReason, TaskState
from torale.tasks import transitions
from torale.tasks.schedule import next_run_after

ACTIVE, PAUSED, COMPLETED = TaskState.ACTIVE, TaskState.PAUSED, TaskState.COMPLETED
DEACTIVATED = PausedReason.ACCOUNT_DEACTIVATED
CREATED = datetime(2030, 1, 1, 8, 0, tzinfo=UTC)
LATER = CREATED + timedelta(days=2, hours=3)


def new_task(state: TaskState = ACTIVE, *, schedule: str = "0 9 * * *") -> Task:
    task = Task(id=uuid.uuid4(), user_id=uuid.uuid4(), schedule=schedule, timezone="UTC")
    transitions.start(task, ACTIVE, now=CREATED)
    if state == PAUSED:
        transitions.pause(task, now=CREATED)
    elif state == COMPLETED:
        transitions.complete(task, now=CREATED)
    return task


def assert_consistent(task: Task) -> None:
    assert (task.next_run is not None) == (task.state == ACTIVE)
    assert task.paused_reason is None or task.state == PAUSED


def test_a_new_task_runs_at_its_first_cron_time_or_now() -> None:
    task = Task(schedule="0 9 * * *", timezone="Europe/Berlin")
    transitions.start(task, ACTIVE, now=CREATED)
    assert task.next_run == next_run_after("0 9 * * *", "Europe/Berlin", CREATED)
    assert task.state_changed_at == CREATED
    transitions.start(task, ACTIVE, now=CREATED, run_immediately=True)
    assert task.next_run == CREATED
    paused = Task(schedule="0 9 * * *", timezone="UTC")
    transitions.start(paused, PAUSED, now=CREATED, run_immediately=True)
    assert (paused.state, paused.next_run) == (PAUSED, None)
    with pytest.raises(ConflictError):
        transitions.start(paused, COMPLETED, now=CREATED)


@pytest.mark.parametrize("current", list(TaskState))
@pytest.mark.parametrize("target", list(TaskState))
def test_the_owner_moves_a_task_only_along_the_table(current: TaskState, target: TaskState) -> None:
    task = new_task(current)
    allowed = current == target or (current, target) in transitions.OWNER_TRANSITIONS
    if not allowed:
        with pytest.raises(ConflictError, match=f"A {current} task cannot become {target}"):
            transitions.change_state(task, target, now=LATER)
        assert task.state == current
        return
    changed = transitions.change_state(task, target, now=LATER)
    assert changed == (current != target)
    assert task.state == target
    assert task.state_changed_at == (LATER if changed else CREATED)
    if target == ACTIVE and changed:
        assert task.next_run == next_run_after("0 9 * * *", "UTC", LATER)  # from now, not then
    assert_consistent(task)


def test_deactivation_pauses_with_its_reason_and_activation_resumes_only_those() -> None:
    theirs, owners = new_task(), new_task(PAUSED)
    transitions.pause(theirs, now=LATER, reason=DEACTIVATED)
    assert (theirs.state, theirs.paused_reason, theirs.next_run) == (PAUSED, DEACTIVATED, None)
    assert not transitions.resume_paused_for(owners, DEACTIVATED, now=LATER)
    assert owners.state == PAUSED
    assert transitions.resume_paused_for(theirs, DEACTIVATED, now=LATER)
    assert (theirs.state, theirs.paused_reason) == (ACTIVE, None)
    assert theirs.next_run == next_run_after("0 9 * * *", "UTC", LATER)
    with pytest.raises(ConflictError):
        transitions.pause(new_task(COMPLETED), now=LATER)


def test_a_run_completes_a_task_paused_meanwhile_and_clears_the_pause_reason() -> None:
    task = new_task()
    transitions.pause(task, now=CREATED, reason=DEACTIVATED)
    assert transitions.complete(task, now=LATER)
    assert (task.state, task.next_run, task.paused_reason) == (COMPLETED, None, None)
    assert not transitions.complete(task, now=LATER + timedelta(hours=1))
    assert task.state_changed_at == LATER


def test_a_new_schedule_moves_only_an_active_tasks_next_run() -> None:
    active, paused = new_task(), new_task(PAUSED)
    for task in (active, paused):
        task.schedule = "30 18 * * 1"
        transitions.reschedule(task, now=LATER)
    assert active.next_run == next_run_after("30 18 * * 1", "UTC", LATER)
    assert active.state_changed_at == CREATED  # not a change of state
    assert paused.next_run is None
