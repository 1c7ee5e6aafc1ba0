"""`torale mcp`: the MCP server over stdio, for assistants that start a command, talking to a
Torale server through the SDK (`TORALE_API_URL` / `TORALE_API_KEY`, else the CLI's saved
key, as `torale task` does). Needs only the SDK and the MCP library (`pip install
'torale[mcp]'`), none of the server's.

The tools are read from the server's own OpenAPI document, so they are the server's, and each
call is the SDK's call of its operation: the server validates it, scopes it to the key's user
and answers it; a refusal comes back with the server's message and status.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from torale.mcp.server import Context, build_server
from torale.mcp.tools import ToolDefinition, ToolError
from torale.sdk import calls
from torale.sdk.client import ToraleAsync
from torale.sdk.errors import APIError
from torale.sdk.transport import Call, asend, call

# Answers may take long (run_task is answered when the run has finished: at most the server's
# run time limit and a margin); a server that does not take the connection is given up soon.
TIMEOUT = httpx.Timeout(900.0, connect=10.0)
PAGE_LIMIT = 20  # the API's default page size
_UUID = TypeAdapter(uuid.UUID)


class Arguments:
    """A tool call's arguments, by where the API takes them."""

    def __init__(self, tool: ToolDefinition, arguments: dict[str, Any]) -> None:
        self.values = arguments
        self.body = {k: v for k, v in arguments.items() if tool.places.get(k) == "body"}

    def id(self, name: str) -> uuid.UUID | None:
        """An id argument, checked before anything is sent (with the API's words)."""
        value = self.values.get(name)
        if value is None and name != "task_id":
            return None
        try:
            return _UUID.validate_python(value)
        except ValidationError as exc:
            raise ToolError(422, f"{name}: {exc.errors()[0]['msg']}") from None

    @property
    def task_id(self) -> uuid.UUID:
        found = self.id("task_id")
        assert found is not None
        return found

    def page(self) -> tuple[Any, Any]:
        return self.values.get("page", 1), self.values.get("limit", PAGE_LIMIT)


CALLS: dict[str, Callable[[Arguments], Call[Any]]] = {
    "list_tasks": lambda a: calls.list_tasks(
        *a.page(), a.values.get("state"), a.values.get("is_active")
    ),
    "get_task": lambda a: calls.get_task(a.task_id),
    "create_task": lambda a: calls.create_task(a.body),
    "update_task": lambda a: calls.update_task(a.task_id, a.body),
    "pause_task": lambda a: calls.update_task(a.task_id, {"state": "paused"}),
    "resume_task": lambda a: calls.update_task(a.task_id, {"state": "active"}),
    "delete_task": lambda a: calls.delete_task(a.task_id),
    "run_task": lambda a: calls.execute_task(a.task_id, True),
    "preview_task": lambda a: calls.preview(a.body),
    "list_executions": lambda a: calls.task_executions(a.task_id, *a.page(), notified=False),
    "list_notifications": lambda a: calls.task_executions(a.task_id, *a.page(), notified=True),
    "diff_runs": lambda a: calls.task_diff(a.task_id, a.id("from"), a.id("to")),
    "suggest_task": lambda a: calls.suggest_task(a.body["prompt"]),
}


def _as_sent(answer: Any) -> Any:
    # What the server sent, unknown fields included and nothing added.
    if isinstance(answer, BaseModel):
        return answer.model_dump(mode="json", exclude_unset=True)
    return answer


class SdkTools:
    """The tools, carried out by a Torale server through the SDK."""

    def __init__(self, client: ToraleAsync) -> None:
        self.client = client
        self._document: dict[str, Any] | None = None

    async def _send(self, request: Call[Any]) -> Any:
        return await asend(self.client.http, self.client.policy, request)

    async def document(self, ctx: Context) -> dict[str, Any]:
        if self._document is None:
            from mcp.shared.exceptions import MCPError
            from mcp_types import INTERNAL_ERROR

            try:
                self._document = await self._send(call("GET", "/openapi.json", dict[str, Any]))
            except APIError as exc:
                url = self.client.api_url
                raise MCPError(INTERNAL_ERROR, f"{exc.message} (at {url})") from None
        return self._document

    async def call(
        self, ctx: Context, tool: ToolDefinition, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        args = Arguments(tool, arguments)
        request = CALLS[tool.name](args)
        try:
            answer = await self._send(request)
        except APIError as exc:
            raise ToolError(exc.status_code, exc.message) from None
        if tool.name == "delete_task":
            return {"deleted": str(args.task_id)}
        sent: dict[str, Any] = _as_sent(answer)
        return sent


async def serve(client: ToraleAsync) -> None:
    """Serve the tools on stdin and stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    server = build_server(SdkTools(client))
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
