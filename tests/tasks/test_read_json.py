"""The task JSON written from stored rows (tasks/read_json.py) is byte for byte what
`TaskRead` / `Page[TaskRead]` write, on both databases, for varied tasks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import update

from tests.fixtures.users import ApiUser
from torale.db.database import session_scope
from torale.db.models import Execution, Task
from torale.pages import Page
from torale.pagination import PageParams
from torale.runtime import Runtime
from torale.tasks import actions, read_json, service
from torale.tasks.list_cache import TaskListCache
from torale.tasks.schemas import TaskRead

BODIES: list[dict[str, Any]] = [
    {"search_query": "When is the next iPhone release date?"},
    {
        "name": 'Prix «été» 😀 "quoted" back\\slash\ttab',
        "search_query": "q",
        "condition_description": "line\nbreak\u2028sep </script>",
        "schedule": "*/30 * * * *",
        "timezone": "Europe/Berlin",
        "notify_behavior": "track_state",
        "config": {"model": "openai:gpt-4o-mini"},
        "notifications": [
            {"type": "webhook", "url": "https://hooks.example.com/t", "headers": {"X-Token": "s3"}},
            {"type": "email", "address": "alerts@example.com"},
            {"type": "apprise", "url": "jsons://x.io/hook?token=secret"},
        ],
        "context": {"n": 1.5e300, "small": 1e-7, "i": -(2**63), "list": [None, True, "é"]},
        "run_immediately": True,
    },
    {
        "urls": [
            "https://example.com/a",
            {"url": "https://example.com/b", "selector": "#price"},
            {
                "url": "https://example.com/c",
                "selector": "json:$.items[0].price",
                "render": "plain",
            },
        ],
        "mode": "rules",
        "rules": {
            "match": "any",
            "conditions": [
                {"kind": "number", "op": "<", "value": 99.99},
                {"kind": "number", "op": "drop_pct", "value": 10},
                {"kind": "text", "op": "matches", "value": "in stock|available"},
            ],
        },
        "state": "paused",
    },
    {
        "urls": ["https://example.com/news"],
        "change": {"ignore_lines": ["^updated "], "only": "additions"},
        "schedule": "@weekly",
        "notify_behavior": "always",
        "context": "plain text context",
    },
]


@pytest.fixture
def rt(app: FastAPI) -> Runtime:
    state = app.state.torale
    return Runtime.build(state.run_engine, state.scheduler)


async def _tasks(client: httpx.AsyncClient, user: ApiUser) -> list[dict[str, Any]]:
    made = []
    for body in BODIES:
        response = await client.post("/api/v1/tasks", json=body, headers=user.headers)
        assert response.status_code == 200, response.text
        made.append(response.json())
    return made


async def test_create_answers_what_task_read_writes(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, rt: Runtime
) -> None:
    for body in BODIES:
        response = await client.post("/api/v1/tasks", json=body, headers=alice.headers)
        assert response.status_code == 200, response.text
        task_id = uuid.UUID(response.json()["id"])
        async with session_scope(rt.sessions, writes=False) as session:
            row = await service.get_task_row(session, user_id=alice.id, task_id=task_id)
        # The answer is the stored task as TaskRead writes it: the same value (PostgreSQL's
        # JSONB orders a re-read context's keys its own way, so values are compared), and
        # the same bytes TaskRead writes for that value.
        assert response.json() == TaskRead.model_validate(row).model_dump(mode="json")
        again = TaskRead.model_validate_json(response.content).model_dump_json().encode()
        assert response.content == again
        assert response.headers["content-type"] == "application/json"


async def test_list_and_get_bodies_equal_pydantic(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, rt: Runtime
) -> None:
    made = await _tasks(client, alice)
    # One task has run: its last execution is embedded.
    ran = made[1]
    execution_id = uuid.uuid4()
    when = datetime(2026, 3, 29, 0, 59, 59, 123456, tzinfo=UTC)
    async with session_scope(rt.sessions) as session:
        session.add(
            Execution(
                id=execution_id,
                task_id=uuid.UUID(ran["id"]),
                user_id=alice.id,
                status="success",
                trigger="schedule",
                created_at=when,
                started_at=when,
                completed_at=when + timedelta(seconds=3),
                condition_met=True,
                change_summary="Price fell «bien»",
                result={
                    "answer": "yes",
                    "condition_met": True,
                    "reasoning": "r",
                    "confidence": 0.75,
                    "current_state": {"price": 9.5},
                },
                grounding_sources=[],
                usage={"llm_calls": 1},
            )
        )
        await session.flush()
        await session.execute(
            update(Task)
            .where(Task.id == uuid.UUID(ran["id"]))
            .values(
                last_execution_id=execution_id,
                last_known_state={"price": 9.5, "nested": {"a": [1, 2.25]}},
                last_notified_at=when,
                condition_met=True,
            )
        )

    for page in (PageParams(page=1, limit=20), PageParams(page=2, limit=3)):
        expected = await actions.list_tasks(rt, user_id=alice.id, page=page)
        assert expected.items  # the pages compared are not empty
        body = await actions.list_tasks_body(
            rt, TaskListCache(), user_id=alice.id, tasks_version=0, page=page
        )
        assert body == expected.model_dump_json().encode()

    for task in made:
        task_id = uuid.UUID(task["id"])
        expected_task = await actions.get_task(rt, user_id=alice.id, task_id=task_id)
        body = await actions.get_task_body(
            rt, TaskListCache(), user_id=alice.id, tasks_version=0, task_id=task_id
        )
        assert body == expected_task.model_dump_json().encode()
    shown = await client.get(f"/api/v1/tasks/{ran['id']}", headers=alice.headers)
    assert shown.json()["last_execution"]["id"] == str(execution_id)
    assert shown.json()["notifications"][0]["headers"] == {"X-Token": "********"}


def _row(**changes: Any) -> dict[str, Any]:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "name": "n",
        "search_query": "q",
        "condition_description": "q",
        "urls": ["https://example.com/"],
        "mode": "model",
        "rules": None,
        "change": None,
        "render": "plain",
        "screenshot": False,
        "schedule": "0 9 * * *",
        "timezone": "UTC",
        "notify_behavior": "once",
        "notifications": [],
        "config": {},
        "executor_type": "llm_grounded_search",
        "state": "active",
        "paused_reason": None,
        "condition_met": False,
        "last_known_state": None,
        "last_notified_at": None,
        "next_run": now,
        "last_execution_id": None,
        "context": None,
        "created_at": now,
        "updated_at": now,
        "state_changed_at": now,
        "selector_misses": 0,
    }
    row.update(changes)
    return service.task_row(row)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"state": "paused", "paused_reason": "account_deactivated"},
        # Rows the fast writer leaves to TaskRead: a NUL saved before the text rules, a
        # target with an unknown key, an integer beyond 64 bits, an unstripped URL.
        {"config": {"model": "a\x00b"}},
        {"notifications": [{"type": "email", "address": "a@example.com"}]},
        {"urls": [{"url": "https://example.com/", "selector": None, "extra": 1}]},
        {"context": {"big": 2**70}},
        {"urls": [" https://example.com/ "]},
        {"created_at": datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC)},
    ],
)
def test_rows_of_every_shape_write_as_task_read(changes: dict[str, Any]) -> None:
    row = _row(**changes)
    try:
        expected = TaskRead.model_validate(row).model_dump_json().encode()
    except ValidationError:  # TaskRead refuses it: so does the fast writer (a 500 either way)
        with pytest.raises(ValidationError):
            read_json.task_json(row)
        return
    assert read_json.task_json(row) == expected
    listing = Page[TaskRead](items=[TaskRead.model_validate(row)], total=7, page=2, limit=1)
    page_body = read_json.page_json([row], {}, total=7, page=2, limit=1)
    assert page_body == listing.model_dump_json().encode()
