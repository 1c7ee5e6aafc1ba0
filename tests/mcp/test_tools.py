"""The tools as read from the API's OpenAPI document: each an operation of the API, with its
description and input schema (no field described twice), and both backends carry out each."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from tests.fixtures.mcp import TOOL_NAMES
from torale import openapi
from torale.app import create_app
from torale.config import Settings
from torale.mcp import local, remote
from torale.mcp.tools import (
    BY_NAME,
    TOOLS,
    ToolDefinition,
    ToolError,
    check_arguments,
    definition,
    definitions,
)


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir: Path = tmp_path_factory.mktemp("mcp-tools")
    settings = Settings(_env_file=None, data_dir=data_dir, secret_key="mcp-tools-" + "x" * 32)
    return create_app(settings, scheduler=False).openapi()


@pytest.fixture(scope="module")
def tools(document: dict[str, Any]) -> dict[str, ToolDefinition]:
    return {tool.name: tool for tool in definitions(document)}


def operation(document: dict[str, Any], name: str) -> dict[str, Any]:
    spec = BY_NAME[name]
    found: dict[str, Any] = document["paths"][spec.path][spec.method.lower()]
    return found


def test_every_tool_is_an_operation_of_the_api(
    document: dict[str, Any], tools: dict[str, ToolDefinition]
) -> None:
    assert list(tools) == TOOL_NAMES
    for name in TOOL_NAMES:
        assert operation(document, name)["responses"]


def test_descriptions_are_the_operations(
    document: dict[str, Any], tools: dict[str, ToolDefinition]
) -> None:
    for spec in TOOLS:
        found, description = operation(document, spec.name), tools[spec.name].description
        if spec.summary is None:
            assert description.startswith(found["summary"]), spec.name
            assert found.get("description", "") in description, spec.name
        else:
            assert description.startswith(spec.summary), spec.name
        assert spec.note.split(":")[0] in description, spec.name
    state = document["components"]["schemas"]["TaskUpdate"]["properties"]["state"]
    assert tools["pause_task"].description.endswith(state["description"])
    assert "always waits" in tools["run_task"].description


def test_input_schemas_are_the_operations_parameters_and_body(
    document: dict[str, Any], tools: dict[str, ToolDefinition]
) -> None:
    schemas = document["components"]["schemas"]
    create = tools["create_task"].input_schema
    assert create["properties"].keys() == schemas["TaskCreate"]["properties"].keys()
    assert (
        create["properties"]["schedule"]["description"]
        == schemas["TaskCreate"]["properties"]["schedule"]["description"]
    )
    update = tools["update_task"]
    assert update.places["task_id"] == "path"
    assert update.input_schema["required"] == ["task_id"]
    assert set(update.input_schema["properties"]) == {"task_id"} | set(
        schemas["TaskUpdate"]["properties"]
    )
    listing = tools["list_tasks"]
    assert listing.places == {
        "state": "query",
        "is_active": "query",
        "page": "query",
        "limit": "query",
    }
    assert "wait" not in tools["run_task"].input_schema["properties"]  # it always waits
    assert tools["diff_runs"].places == {"task_id": "path", "from": "query", "to": "query"}
    assert tools["suggest_task"].input_schema["required"] == ["prompt"]
    for tool in tools.values():
        assert tool.input_schema["type"] == "object"
        assert tool.input_schema["additionalProperties"] is False


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [r for key, value in node.items() for r in _references(value)] + (
            [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        )
    if isinstance(node, list):
        return [r for item in node for r in _references(item)]
    return []


def test_every_reference_is_carried_along(tools: dict[str, ToolDefinition]) -> None:
    for tool in tools.values():
        defs = tool.input_schema.get("$defs", {})
        for reference in _references(tool.input_schema):
            assert reference.startswith("#/$defs/"), (tool.name, reference)
            assert reference.removeprefix("#/$defs/") in defs, (tool.name, reference)
        jsonschema_rs.Draft202012Validator(tool.input_schema)  # a valid schema


def test_the_apis_request_examples_are_valid_arguments(tools: dict[str, ToolDefinition]) -> None:
    for spec in TOOLS:
        documented = openapi.OPERATIONS[spec.operation]
        if not spec.body:
            continue
        assert documented.request, spec.name
        tool = tools[spec.name]
        validator = jsonschema_rs.Draft202012Validator(tool.input_schema, validate_formats=True)
        path = {"task_id": openapi.TASK_ID} if "task_id" in tool.places else {}
        for example in documented.request.values():
            assert validator.is_valid(path | example["value"]), (spec.name, example)
            assert not validator.is_valid(path | example["value"] | {"colour": "red"})


PROBES: list[Any] = [
    None,
    0,
    1,
    20,
    100,
    101,
    1_000_000,
    1_000_001,
    "x",
    "active",
    "paused",
    "banana",
    str(uuid.uuid4()),
    "not-a-uuid",
    {},
]


def test_the_local_parameters_are_the_tools_parameters(tools: dict[str, ToolDefinition]) -> None:
    """The types the in-process tools validate path and query arguments with accept exactly
    what the operations' parameter schemas accept."""
    seen = set()
    for tool in tools.values():
        defs = tool.input_schema.get("$defs", {})
        for name, place in tool.places.items():
            if place == "body":
                continue
            seen.add(name)
            schema = {**tool.input_schema["properties"][name], "$defs": defs}
            validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
            # pydantic reads 0 and 1 as booleans, as the routes read `?is_active=0`.
            boolean = validator.is_valid(True)
            for probe in PROBES:
                if boolean and probe in (0, 1) and not isinstance(probe, bool):
                    continue
                try:
                    local.PARAMETERS[name].validate_python(probe)
                except ValueError:
                    accepted = False
                else:
                    accepted = True
                assert accepted == validator.is_valid(probe), (tool.name, name, probe)
    assert seen == set(local.PARAMETERS)


def test_both_backends_carry_out_every_tool(tools: dict[str, ToolDefinition]) -> None:
    assert set(local.HANDLERS) == set(remote.CALLS) == set(TOOL_NAMES)
    assert set(local.BODIES) == {spec.name for spec in TOOLS if spec.body}
    for name, schema in local.BODIES.items():
        body = {k for k, place in tools[name].places.items() if place == "body"}
        assert body == set(schema.model_fields), name


def test_arguments_are_checked_before_a_call(tools: dict[str, ToolDefinition]) -> None:
    check_arguments(tools["get_task"], {"task_id": openapi.TASK_ID})
    check_arguments(tools["list_tasks"], {})
    with pytest.raises(ToolError) as unknown:
        check_arguments(tools["get_task"], {"task_id": openapi.TASK_ID, "id": 1, "colour": 2})
    assert (unknown.value.status, unknown.value.text) == (
        422,
        "get_task does not take colour, id; it takes: task_id (HTTP 422)",
    )
    with pytest.raises(ToolError) as missing:
        check_arguments(tools["suggest_task"], {})
    assert missing.value.text == "prompt: Field required (HTTP 422)"


def test_an_operation_the_api_drops_is_noticed(document: dict[str, Any]) -> None:
    """The catalog is checked against the document, not trusted: a tool whose operation is
    gone fails to build."""
    drifted = {**document, "paths": dict(document["paths"])}
    del drifted["paths"]["/api/v1/tasks/{task_id}/diff"]
    with pytest.raises(KeyError):
        definition(drifted, BY_NAME["diff_runs"])
