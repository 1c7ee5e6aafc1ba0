"""The actions called the way a CLI command, an MCP tool or a web page calls them: no HTTP, a
Runtime built from the process's run engine and scheduler. The routes are tested through HTTP
in test_router.py and tests/engine; these check that nothing in the actions needs a request."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.fakes import FakeOpenAI, FakeWeb, sequence
from tests.fixtures.engine import (  # noqa: F401 - the engine's local fakes, as fixtures here
    NOT_MET,
    _fresh_fakes,
    extra_settings,
    fake_model,
    fake_search,
    fake_web,
    page,
    settings_overrides,
)
from tests.fixtures.users import ApiUser
from torale.admin import actions as admin_actions
from torale.db.database import session_scope
from torale.db.models import Task
from torale.errors import ConflictError, NotFoundError
from torale.executions import actions as execution_actions
from torale.pagination import PageParams
from torale.runtime import Runtime
from torale.statuses import ExecutionStatus, PausedReason, TaskState, Trigger
from torale.tasks import actions
from torale.tasks.schemas import TaskCreate, TaskUpdate


@pytest.fixture
def rt(app: FastAPI) -> Runtime:
    state = app.state.torale
    return Runtime.build(state.run_engine, state.scheduler)


@pytest.fixture
def watched(fake_web: FakeWeb, fake_model: FakeOpenAI) -> dict[str, Any]:
    fake_web.set_page("/p", page("No date yet."))
    fake_model.script = sequence(NOT_MET)
    return {"urls": [fake_web.url + "/p"], "config": {"search_provider": "none"}}


async def stored(rt: Runtime, task_id: uuid.UUID) -> Task | None:
    async with session_scope(rt.sessions, writes=False) as session:
        task: Task | None = await session.scalar(select(Task).where(Task.id == task_id))
        return task


async def test_a_task_created_paused_resumed_changed_and_deleted_without_http(
    rt: Runtime, alice: ApiUser, bob: ApiUser, watched: dict[str, Any]
) -> None:
    created = await actions.create_task(
        rt, user_id=alice.id, data=TaskCreate(search_query="q", **watched)
    )
    assert (created.state, created.is_active) == (TaskState.ACTIVE, True)
    assert created.next_run is not None

    paused = await actions.pause_task(rt, user_id=alice.id, task_id=created.id)
    assert (paused.state, paused.next_run) == (TaskState.PAUSED, None)
    resumed = await actions.resume_task(rt, user_id=alice.id, task_id=created.id)
    assert resumed.state == TaskState.ACTIVE
    assert resumed.next_run is not None

    done = await actions.update_task(
        rt, user_id=alice.id, task_id=created.id, data=TaskUpdate(state=TaskState.COMPLETED)
    )
    assert done.state == TaskState.COMPLETED
    with pytest.raises(ConflictError, match="A completed task cannot become paused"):
        await actions.pause_task(rt, user_id=alice.id, task_id=created.id)
    row = await stored(rt, created.id)
    assert row is not None
    assert row.state == TaskState.COMPLETED  # the refused change wrote nothing

    listed = await actions.list_tasks(rt, user_id=alice.id, page=PageParams(page=1, limit=10))
    assert ([t.id for t in listed.items], listed.total, listed.page) == ([created.id], 1, 1)
    assert (await actions.list_tasks(rt, user_id=bob.id, page=PageParams(1, 10))).total == 0
    with pytest.raises(NotFoundError):
        await actions.get_task(rt, user_id=bob.id, task_id=created.id)
    with pytest.raises(NotFoundError):
        await actions.delete_task(rt, user_id=bob.id, task_id=created.id)

    await actions.delete_task(rt, user_id=alice.id, task_id=created.id)
    assert await stored(rt, created.id) is None


async def test_run_now_waits_and_the_run_is_listed(
    rt: Runtime, alice: ApiUser, bob: ApiUser, watched: dict[str, Any]
) -> None:
    task = await actions.create_task(
        rt, user_id=alice.id, data=TaskCreate(search_query="q", **watched)
    )
    with pytest.raises(NotFoundError):
        await execution_actions.run_now(rt, user_id=bob.id, task_id=task.id)
    execution = await execution_actions.run_now(rt, user_id=alice.id, task_id=task.id, wait=True)
    assert (execution.status, execution.trigger) == (ExecutionStatus.SUCCESS, Trigger.MANUAL)
    assert execution.result is not None
    assert execution.result.answer == NOT_MET["answer"]

    runs = await execution_actions.list_executions(
        rt, user_id=alice.id, task_id=task.id, page=PageParams(page=1, limit=5)
    )
    assert ([e.id for e in runs.items], runs.total, runs.limit) == ([execution.id], 1, 5)
    notified = await execution_actions.list_executions(
        rt, user_id=alice.id, task_id=task.id, page=PageParams(1, 5), notified_only=True
    )
    assert notified.total == 0
    with pytest.raises(NotFoundError):
        await execution_actions.list_executions(
            rt, user_id=bob.id, task_id=task.id, page=PageParams(1, 5)
        )
    shown = await actions.get_task(rt, user_id=alice.id, task_id=task.id)
    assert shown.last_execution is not None
    assert shown.last_execution.id == execution.id


async def test_deactivation_and_activation_move_the_users_tasks(
    rt: Runtime, alice: ApiUser, bob: ApiUser, watched: dict[str, Any]
) -> None:
    running = await actions.create_task(
        rt, user_id=alice.id, data=TaskCreate(search_query="q", **watched)
    )
    own_pause = await actions.create_task(
        rt, user_id=alice.id, data=TaskCreate(search_query="q", state="paused", **watched)
    )
    change = await admin_actions.deactivate_user(rt, user_id=alice.id, actor_id=bob.id)
    assert (change.user.is_active, change.tasks_changed) == (False, 1)
    row = await stored(rt, running.id)
    assert row is not None
    assert (row.state, row.paused_reason, row.next_run) == (
        TaskState.PAUSED,
        PausedReason.ACCOUNT_DEACTIVATED,
        None,
    )
    back = await admin_actions.activate_user(rt, user_id=alice.id)
    assert (back.user.is_active, back.tasks_changed) == (True, 1)
    for task_id, state in ((running.id, TaskState.ACTIVE), (own_pause.id, TaskState.PAUSED)):
        row = await stored(rt, task_id)
        assert row is not None
        assert (row.state, row.paused_reason) == (state, None)
