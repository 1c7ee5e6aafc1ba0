"""The MCP server through the official SDK's client, against a real `torale serve` (with the
local fakes for search, pages and the model): over Streamable HTTP at `/mcp`, and over stdio
through `torale mcp` (which talks to that server with the SDK). Both transports are held to
the same answers: the tools, the API's data, and the API's refusals with its messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from mcp import Client

from tests.fixtures.api_server import Api, MakeUser
from tests.fixtures.engine import DRAFT, MET
from tests.fixtures.mcp import TOOL_NAMES, call, http_session, stdio_session
from tests.fixtures.sdk_examples import CONDITION, QUERY, UNKNOWN_ID
from torale.openapi import UNKNOWN_ID as UNKNOWN_ID_MESSAGE
from torale.sdk import Torale
from torale.tasks.schemas import TaskCreate

Session = Callable[[str | None], AbstractAsyncContextManager[Client]]


@pytest.fixture(params=["http", "stdio"])
def session(request: pytest.FixtureRequest, api: Api, tmp_path: Path) -> Session:
    """Factory: an MCP client session with the given key, over the transport of the test."""

    @asynccontextmanager
    async def open_session(key: str | None) -> AsyncIterator[Client]:
        if request.param == "http":
            async with http_session(api.url, key) as client:
                yield client
        else:
            async with stdio_session(api.url, key, tmp_path) as client:
                yield client

    return open_session


@pytest.fixture
def other_key(make_user: MakeUser) -> str:
    """A second user (made outside the test's event loop: `torale keys create` runs its own)."""
    return make_user("mcp-other")


async def test_the_tools_are_the_apis_operations(session: Session, user_key: str) -> None:
    async with session(user_key) as client:
        listed = (await client.list_tools()).tools
    assert [tool.name for tool in listed] == TOOL_NAMES
    tools = {tool.name: tool for tool in listed}
    create = tools["create_task"]
    assert list(create.input_schema["properties"]) == list(TaskCreate.model_fields)
    assert create.description is not None
    assert create.description.startswith("Create a task.")
    run = tools["run_task"]
    assert run.input_schema["required"] == ["task_id"]
    assert "always waits" in (run.description or "")


async def test_a_task_is_created_run_and_read(session: Session, user_key: str) -> None:
    async with session(user_key) as client:
        created = await call(
            client,
            "create_task",
            search_query=QUERY,
            condition_description=CONDITION,
            notify_behavior="always",  # stays active when met (once would complete it)
        )
        task = created.value
        assert (task["search_query"], task["mode"], task["state"]) == (QUERY, "model", "active")
        task_id = task["id"]

        run = (await call(client, "run_task", task_id=task_id)).value  # waits for the verdict
        assert run["status"] == "success", run
        assert run["result"]["answer"] == MET["answer"]
        assert run["result"]["condition_met"] is True
        assert run["notification"]

        runs = (await call(client, "list_executions", task_id=task_id)).value
        assert [e["id"] for e in runs["items"]] == [run["id"]]
        assert (runs["total"], runs["page"], runs["limit"]) == (1, 1, 20)
        notified = (await call(client, "list_notifications", task_id=task_id, limit=5)).value
        assert [e["id"] for e in notified["items"]] == [run["id"]]
        again = (await call(client, "run_task", task_id=task_id)).value
        diff = (await call(client, "diff_runs", task_id=task_id)).value
        assert (diff["from_execution_id"], diff["to_execution_id"]) == (run["id"], again["id"])
        assert diff["changed"] is False  # the same page, read twice

        read = (await call(client, "get_task", task_id=task_id)).value
        assert read["last_execution"]["id"] == again["id"]
        listed = (await call(client, "list_tasks")).value
        assert [t["id"] for t in listed["items"]] == [task_id]

        paused = (await call(client, "pause_task", task_id=task_id)).value
        assert (paused["state"], paused["next_run"]) == ("paused", None)
        assert (await call(client, "list_tasks", state="active")).value["items"] == []
        resumed = (await call(client, "resume_task", task_id=task_id)).value
        assert resumed["state"] == "active"
        updated = (await call(client, "update_task", task_id=task_id, schedule="@hourly")).value
        assert updated["schedule"] == "0 * * * *"

        preview = (await call(client, "preview_task", search_query=QUERY)).value
        assert preview["answer"] == MET["answer"]
        suggestion = (
            await call(client, "suggest_task", prompt="tell me when the next iPhone is announced")
        ).value
        assert suggestion["task"]["name"] == DRAFT["name"]
        assert suggestion["explanation"] == DRAFT["explanation"]
        drafted = (await call(client, "create_task", **suggestion["task"])).value
        assert (drafted["name"], drafted["schedule"]) == (DRAFT["name"], "0 0 * * *")

        assert (await call(client, "delete_task", task_id=task_id)).value == {"deleted": task_id}
        gone = await call(client, "get_task", task_id=task_id)
        assert gone.error == "Task not found (HTTP 404)"


async def test_another_users_task_is_not_found(
    session: Session, api: Api, user_key: str, other_key: str
) -> None:
    owner, other = user_key, other_key
    with Torale(api_key=owner, api_url=api.url) as sdk:
        task = sdk.tasks.create(QUERY)
    task_id = str(task.id)
    async with session(other) as client:
        for tool, arguments in (
            ("get_task", {}),
            ("update_task", {"name": "mine now"}),
            ("pause_task", {}),
            ("run_task", {}),
            ("list_executions", {}),
            ("list_notifications", {}),
            ("diff_runs", {}),
            ("delete_task", {}),
        ):
            refused = await call(client, tool, task_id=task_id, **arguments)
            assert refused.error == "Task not found (HTTP 404)", tool
            unknown = await call(client, tool, task_id=UNKNOWN_ID, **arguments)
            assert unknown.error == refused.error  # as for an id that does not exist
        assert (await call(client, "list_tasks")).value["items"] == []
    with Torale(api_key=owner, api_url=api.url) as sdk:
        kept = sdk.tasks.get(task.id)
    assert (kept.name, kept.state, kept.last_execution) == (task.name, "active", None)


async def test_refusals_carry_the_apis_message(session: Session, user_key: str) -> None:
    async with session(user_key) as client:
        bad_cron = await call(client, "create_task", search_query=QUERY, schedule="daily")
        assert bad_cron.error.startswith("schedule: Invalid cron expression: it has 1 field")
        assert bad_cron.error.endswith("(HTTP 422)")
        bad_id = await call(client, "get_task", task_id="not-a-task")
        assert bad_id.error == f"task_id: {UNKNOWN_ID_MESSAGE} (HTTP 422)"  # the API's words
        unknown = await call(client, "create_task", search_query=QUERY, colour="red")
        assert unknown.error.startswith("create_task does not take colour; it takes: name, ")
        missing = await call(client, "get_task")
        assert missing.error == "task_id: Field required (HTTP 422)"
        too_many = await call(client, "list_tasks", limit=500)
        assert too_many.error == "limit: Input should be less than or equal to 100 (HTTP 422)"
        task = (await call(client, "create_task", search_query=QUERY)).value
        await call(client, "update_task", task_id=task["id"], state="completed")
        conflict = await call(client, "pause_task", task_id=task["id"])
        assert conflict.error == "A completed task cannot become paused (HTTP 409)"
        assert (await call(client, "list_tasks")).value["total"] == 1  # nothing else was made


def test_the_readmes_client_configurations_name_what_the_tests_use() -> None:
    """The README's JSON snippets: stdio starts `torale mcp` with the two variables the tests
    set, HTTP goes to `/mcp` with the bearer header the tests send."""
    import json
    import re

    from tests.sdk.readme import FENCE, section

    blocks = [
        json.loads(code)["mcpServers"]["torale"]
        for lang, code in FENCE.findall(section("Use it from an AI assistant (MCP)"))
        if lang == "json"
    ]
    stdio = [b for b in blocks if "command" in b]
    http = [b for b in blocks if "url" in b]
    assert len(stdio) == 1
    assert len(http) == 2
    assert (stdio[0]["command"], stdio[0]["args"]) == ("torale", ["mcp"])
    assert set(stdio[0]["env"]) == {"TORALE_API_URL", "TORALE_API_KEY"}
    for block in http:
        assert block["url"].endswith("/mcp")
        assert re.fullmatch(
            r"Bearer \$\{(env:)?TORALE_API_KEY\}", block["headers"]["Authorization"]
        )
