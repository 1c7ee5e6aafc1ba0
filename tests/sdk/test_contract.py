"""The SDK against the server's OpenAPI document (`create_app(...).openapi()`).

Every operation the SDK offers (`sdk/calls.py`) exists on the server, with its query parameters,
and the SDK's model reads every field of the server's response schema (same name, a type that
reads every value the server may send, the enum values listed, unknown fields kept, new enum
values read). The request fields the SDK sends are fields the server takes. The checks of
`contract.py` are themselves tested below on drifted copies of the schemas, so that a broken
check cannot pass quietly.
"""

from __future__ import annotations

import copy
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from tests.sdk.contract import Contract
from torale.app import create_app
from torale.config import Settings
from torale.sdk import calls
from torale.sdk.client import Tasks, task_fields
from torale.sdk.models import Page, Task
from torale.sdk.transport import Call

ID = "00000000-0000-4000-8000-000000000000"

# Every function of sdk/calls.py, with every parameter given (None ones are not sent).
OPERATIONS: dict[str, Call[Any]] = {
    "create_task": calls.create_task({}),
    "list_tasks": calls.list_tasks(1, 20, "active", True),
    "get_task": calls.get_task(ID),
    "update_task": calls.update_task(ID, {}),
    "delete_task": calls.delete_task(ID),
    "execute_task": calls.execute_task(ID, True),
    "task_executions": calls.task_executions(ID, 1, 20, notified=False),
    "preview": calls.preview({}),
    "suggest_task": calls.suggest_task("tell me when the next iPhone is announced"),
    "execution_sources": calls.execution_sources(ID, ID),
    "task_diff": calls.task_diff(ID, ID, ID),
    "me": calls.me(),
    "list_api_keys": calls.list_api_keys(1, 20),
    "create_api_key": calls.create_api_key("laptop"),
    "revoke_api_key": calls.revoke_api_key(ID),
    "webhook_config": calls.webhook_config(),
    "update_webhook_config": calls.update_webhook_config({}),
    "rotate_webhook_secret": calls.rotate_webhook_secret(),
    "send_test_webhook": calls.send_test_webhook("https://hooks.example.com/"),
    "deliveries": calls.deliveries(1, 20, ID),
    "feed_token": calls.feed_token(),
    "rotate_feed_token": calls.rotate_feed_token(),
    "delete_feed_token": calls.delete_feed_token(),
}
NOTIFIED = calls.task_executions(ID, 1, 20, notified=True)


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir: Path = tmp_path_factory.mktemp("contract")
    settings = Settings(_env_file=None, data_dir=data_dir, secret_key="contract-" + "x" * 32)
    return create_app(settings, scheduler=False).openapi()


def operation(openapi: dict[str, Any], call: Call[Any]) -> dict[str, Any]:
    for template, operations in openapi["paths"].items():
        pattern = re.sub(r"\{[^/]+\}", "[^/]+", template)
        if re.fullmatch(pattern, call.path) and call.method.lower() in operations:
            found: dict[str, Any] = operations[call.method.lower()]
            return found
    raise AssertionError(f"{call.method} {call.path}: not in the server's OpenAPI document")


def success(found: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    status = min(code for code in found["responses"] if code.startswith("2"))
    response: dict[str, Any] = found["responses"][status]
    return status, response


def sdk_schema(model: Any) -> dict[str, Any]:
    schema: dict[str, Any] = TypeAdapter(model).json_schema(mode="validation")
    return schema


def compare(openapi: dict[str, Any], server: dict[str, Any], model: Any) -> list[str]:
    ours = sdk_schema(model)
    contract = Contract(openapi["components"]["schemas"], ours.get("$defs", {}))
    return contract.problems("response", server, ours)


def test_every_sdk_operation_is_checked() -> None:
    defined = {
        name
        for name, function in inspect.getmembers(calls, inspect.isfunction)
        if function.__module__ == calls.__name__ and not name.startswith("_")
    }
    assert defined == set(OPERATIONS)


@pytest.mark.parametrize("name", [*OPERATIONS, "task_notifications"])
def test_the_server_has_the_operation_and_the_sdk_reads_its_answer(
    openapi: dict[str, Any], name: str
) -> None:
    call = NOTIFIED if name == "task_notifications" else OPERATIONS[name]
    found = operation(openapi, call)
    query = {p["name"] for p in found.get("parameters", []) if p["in"] == "query"}
    assert set(call.params) <= query, f"{name}: the server does not take {set(call.params) - query}"
    status, response = success(found)
    if call.model is None:  # the SDK does not read this answer
        assert name in ("delete_task", "revoke_api_key")
        return
    assert status == "200"
    server = response["content"]["application/json"]["schema"]
    assert compare(openapi, server, call.model) == []


def test_the_request_fields_the_sdk_sends_are_the_servers(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    sent = set(inspect.signature(task_fields).parameters)
    assert sent <= set(schemas["TaskCreate"]["properties"])
    assert sent - {"run_immediately"} <= set(schemas["TaskUpdate"]["properties"])
    previewed = set(inspect.signature(Tasks.preview).parameters) - {"self"}
    assert previewed <= set(schemas["PreviewRequest"]["properties"])


# --- the checks catch drift ----------------------------------------------------------------


def task_problems(server_defs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    server = {"$ref": "#/components/schemas/TaskRead"}
    return Contract(server_defs, ours["$defs"]).problems("response", server, ours)


@pytest.fixture
def server_defs(openapi: dict[str, Any]) -> dict[str, Any]:
    defs: dict[str, Any] = copy.deepcopy(openapi["components"]["schemas"])
    return defs


@pytest.fixture
def ours() -> dict[str, Any]:
    """The SDK's Task, wrapped so that it is a definition (as Page[Task] has it)."""
    schema = sdk_schema(Page[Task])
    return {"$defs": schema["$defs"], "$ref": "#/$defs/Task"}


def test_the_sdk_task_matches_as_it_is(server_defs: dict[str, Any], ours: dict[str, Any]) -> None:
    assert task_problems(server_defs, ours) == []


def test_a_field_the_server_adds_is_reported(
    server_defs: dict[str, Any], ours: dict[str, Any]
) -> None:
    server_defs["TaskRead"]["properties"]["labels"] = {"type": "array", "items": {"type": "string"}}
    server_defs["ExecutionRead"]["properties"]["cost"] = {"type": "number"}
    assert task_problems(server_defs, ours) == [
        "ExecutionRead.cost: the server sends it; the SDK's Execution lacks it",
        "TaskRead.labels: the server sends it; the SDK's Task lacks it",
    ]


def test_an_enum_value_the_server_adds_is_reported(
    server_defs: dict[str, Any], ours: dict[str, Any]
) -> None:
    # The task's state is a named enum (a `$ref` to TaskState) in the server's document.
    state = server_defs["TaskRead"]["properties"]["state"]
    target = server_defs[state["$ref"].rsplit("/", 1)[-1]] if "$ref" in state else state
    target["enum"].append("archived")
    assert task_problems(server_defs, ours) == [
        "TaskRead.state: the SDK does not list ['archived'] among its known values"
    ]


def test_a_closed_enum_in_the_sdk_is_reported(
    server_defs: dict[str, Any], ours: dict[str, Any]
) -> None:
    ours["$defs"]["Task"]["properties"]["state"] = {
        "enum": ["active", "paused", "completed"],
        "type": "string",
    }
    ours["$defs"]["Task"]["properties"]["executor_type"] = {
        "const": "llm_grounded_search",
        "type": "string",
    }
    assert task_problems(server_defs, ours) == [
        "TaskRead.executor_type: the SDK reads only ['llm_grounded_search']; a value a newer "
        "server adds would fail (type it Literal[...] | str)",
        "TaskRead.state: the SDK reads only ['active', 'completed', 'paused']; a value a newer "
        "server adds would fail (type it Literal[...] | str)",
    ]


def test_a_union_without_a_catch_all_is_reported(
    server_defs: dict[str, Any], ours: dict[str, Any]
) -> None:
    items = ours["$defs"]["Task"]["properties"]["notifications"]["items"]
    items["oneOf"] = [alt for alt in items["oneOf"] if not alt["$ref"].endswith("UnknownChannel")]
    assert task_problems(server_defs, ours) == [
        "TaskRead.notifications[]: no SDK model reads a 'type' a newer server adds "
        "(add a catch-all model)"
    ]


def test_types_that_cannot_read_the_servers_values_are_reported(
    server_defs: dict[str, Any], ours: dict[str, Any]
) -> None:
    task = ours["$defs"]["Task"]["properties"]
    task["next_run"] = {"type": "string", "format": "date-time"}  # no longer nullable
    task["condition_met"] = {"type": "integer"}
    task["id"] = {"type": "string", "format": "date-time"}
    ours["$defs"]["Usage"]["properties"]["llm_calls"] = {"type": "string"}
    assert task_problems(server_defs, ours) == [
        "TaskRead.condition_met: the server sends boolean, the SDK reads integer",
        "TaskRead.id: the server sends a string of format uuid, the SDK reads format date-time",
        "TaskRead.next_run: the server sends null, the SDK reads string",
        "Usage.llm_calls: the server sends integer, the SDK reads string",
    ]


def test_a_stale_or_stricter_sdk_model_is_reported(
    server_defs: dict[str, Any], ours: dict[str, Any]
) -> None:
    task = ours["$defs"]["Task"]
    task["additionalProperties"] = False
    task["properties"]["priority"] = {"type": "integer"}
    task["required"] = [*task["required"], "paused_reason"]
    ours["$defs"]["WebhookChannel"]["properties"].pop("headers")
    assert task_problems(server_defs, ours) == [
        "TaskRead.paused_reason: the SDK's Task requires it; the server does not promise it",
        "TaskRead.priority: the SDK's Task has it; the server's schema does not",
        "TaskRead: the SDK's Task refuses fields a newer server adds "
        '(it must keep them: extra="allow")',
        "WebhookChannel-Output.headers: the server sends it; the SDK's WebhookChannel lacks it",
    ]
