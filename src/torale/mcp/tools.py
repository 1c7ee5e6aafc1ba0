"""The MCP tools: which API operation each one is, and its definition read from the API's
OpenAPI document (standard library only: the stdio server reads the document from the server).

A tool's description is its operation's summary and description, plus a note where the tool
differs from the route (`run_task` waits for the verdict). Its input schema is the operation's
path parameters, the query parameters it takes, and the fields of the request body (when it
has one), with the `$ref`s of the document's components carried along as `$defs`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

TASKS = "/api/v1/tasks"
TASK = f"{TASKS}/{{task_id}}"
_COMPONENTS = "#/components/schemas/"
_DEFS = "#/$defs/"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    method: str
    path: str
    query: tuple[str, ...] = ()  # the query parameters the tool takes
    body: bool = False  # whether the request body's fields are the tool's arguments too
    summary: str | None = None  # instead of the operation's (a tool that is not a route)
    note: str = ""  # where the tool differs from the route

    @property
    def operation(self) -> tuple[str, str]:
        return self.method, self.path


_TASK_STATE = "State changes allowed: "  # followed by the `state` field's description
TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("list_tasks", "GET", TASKS, query=("page", "limit", "state", "is_active")),
    ToolSpec("get_task", "GET", TASK),
    ToolSpec(
        "create_task",
        "POST",
        TASKS,
        body=True,
        note="suggest_task drafts these fields from a sentence.",
    ),
    ToolSpec("update_task", "PATCH", TASK, body=True),
    ToolSpec(
        "pause_task",
        "PATCH",
        TASK,
        summary="Pause a task: no scheduled runs until it is resumed",
        note=_TASK_STATE,
    ),
    ToolSpec(
        "resume_task",
        "PATCH",
        TASK,
        summary="Resume a paused or completed task: scheduled runs again, from its next cron time",
        note=_TASK_STATE,
    ),
    ToolSpec("delete_task", "DELETE", TASK),
    ToolSpec(
        "run_task",
        "POST",
        f"{TASK}/execute",
        note="This tool always waits, as with `?wait=true`: it answers the finished execution, "
        "with its verdict (`result`), sources and notification.",
    ),
    ToolSpec("preview_task", "POST", f"{TASKS}/preview", body=True),
    ToolSpec("list_executions", "GET", f"{TASK}/executions", query=("page", "limit")),
    ToolSpec("list_notifications", "GET", f"{TASK}/notifications", query=("page", "limit")),
    ToolSpec("diff_runs", "GET", f"{TASK}/diff", query=("from", "to")),
    ToolSpec(
        "suggest_task",
        "POST",
        f"{TASKS}/suggest",
        body=True,
        note="Show the draft to the user; create it with create_task, with the draft's `task` "
        "fields as arguments (changed as the user asks).",
    ),
)
BY_NAME = {spec.name: spec for spec in TOOLS}


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    name: str
    description: str
    input_schema: dict[str, Any]
    # Where each argument goes: "path", "query" or "body".
    places: dict[str, str]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].removeprefix(_COMPONENTS)]
    return schema


def _to_defs(node: Any, found: set[str]) -> Any:
    """`node` with references to the document's components pointing at `$defs` instead (the
    names referred to are added to `found`)."""
    if isinstance(node, list):
        return [_to_defs(item, found) for item in node]
    if not isinstance(node, dict):
        if isinstance(node, str) and node.startswith(_COMPONENTS):
            found.add(node.removeprefix(_COMPONENTS))
            return _DEFS + node.removeprefix(_COMPONENTS)
        return node
    return {key: _to_defs(value, found) for key, value in node.items()}


def _definitions(document: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The components `names` refer to, and the ones they refer to, as `$defs`."""
    components = document["components"]["schemas"]
    defs: dict[str, Any] = {}
    pending = set(names)
    while pending:
        name = pending.pop()
        if name in defs:
            continue
        more: set[str] = set()
        defs[name] = _to_defs(copy.deepcopy(components[name]), more)
        pending |= more - defs.keys()
    return dict(sorted(defs.items()))


def _description(spec: ToolSpec, operation: dict[str, Any], body: dict[str, Any] | None) -> str:
    summary = spec.summary or operation.get("summary", spec.name)
    parts = [summary.rstrip(".") + "."]
    if spec.summary is None and operation.get("description"):
        parts.append(operation["description"])
    note = spec.note
    if note == _TASK_STATE and body is not None:
        note += body["properties"]["state"].get("description", "")
    if note:
        parts.append(note)
    return " ".join(parts)


def definition(document: dict[str, Any], spec: ToolSpec) -> ToolDefinition:
    """`spec`'s tool as the OpenAPI `document` describes its operation."""
    operation = document["paths"][spec.path][spec.method.lower()]
    properties: dict[str, Any] = {}
    required: list[str] = []
    places: dict[str, str] = {}
    for parameter in operation.get("parameters", []):
        name, where = parameter["name"], parameter["in"]
        if where == "path" or (where == "query" and name in spec.query):
            field = dict(parameter.get("schema", {}))
            if parameter.get("description"):
                field["description"] = parameter["description"]
            properties[name] = field
            places[name] = where
            if parameter.get("required"):
                required.append(name)
    body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json")
    body = _resolve(document, body_schema["schema"]) if body_schema else None
    if spec.body and body is not None:
        for name, field in body.get("properties", {}).items():
            properties[name] = field
            places[name] = "body"
        required += body.get("required", [])
    found: set[str] = set()
    schema: dict[str, Any] = {
        "type": "object",
        "properties": _to_defs(copy.deepcopy(properties), found),
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    if found:
        schema["$defs"] = _definitions(document, found)
    return ToolDefinition(spec.name, _description(spec, operation, body), schema, places)


def definitions(document: dict[str, Any]) -> list[ToolDefinition]:
    """Every tool, in the order of TOOLS."""
    return [definition(document, spec) for spec in TOOLS]


class ToolError(Exception):
    """A call the API refused or could not carry out: its HTTP status (None when the server
    could not be reached) and the API's message."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def text(self) -> str:
        return f"{self.message} (HTTP {self.status})" if self.status else self.message


def check_arguments(tool: ToolDefinition, arguments: dict[str, Any]) -> None:
    """422 for an argument the tool does not take, or a required one missing."""
    known = tool.input_schema["properties"]
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise ToolError(
            422,
            f"{tool.name} does not take {', '.join(unknown)}; it takes: {', '.join(known)}",
        )
    missing = [name for name in tool.input_schema.get("required", []) if name not in arguments]
    if missing:
        raise ToolError(422, "; ".join(f"{name}: Field required" for name in missing))
