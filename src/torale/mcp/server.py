"""The MCP server: Torale's tools (`tools.py`), carried out by a backend.

The backend gives the OpenAPI document the tools are read from and carries a call out: the
local one calls the API's actions in process (`local.py`), the remote one the API through the
SDK (`remote.py`). Whatever the API refuses comes back as a tool error (`is_error`) whose text
is the API's message and status, so that the assistant can tell the user, or correct itself.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from torale import __version__
from torale.mcp import tools
from torale.mcp.tools import ToolDefinition, ToolError, check_arguments

Context = ServerRequestContext[Any, Any]

INSTRUCTIONS = """\
Torale watches the web for its user: a task is what to watch (a web search a model judges, or
pages read on every run), when to notify (a condition), how often (a cron schedule) and whom to
tell. To start watching something, draft the task with suggest_task (from the user's own
words), show it to the user, and save it with create_task. run_task checks a task now and
answers the verdict; list_executions and list_notifications show what earlier runs found, and
diff_runs what changed between two runs of a task that watches pages.
"""


class Backend(Protocol):
    async def document(self, ctx: Context) -> dict[str, Any]:
        """The API's OpenAPI document (the same object while it does not change)."""
        ...

    async def call(
        self, ctx: Context, tool: ToolDefinition, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        """Carry the call out; the API's answer, or ToolError."""
        ...


def _failed(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def build_server(backend: Backend) -> Server[Any]:
    """An MCP server of Torale's tools on `backend` (any transport can run it)."""
    # The tools of the last document seen: it is the same object until the API changes.
    known: list[tuple[dict[str, Any], dict[str, ToolDefinition]]] = []

    async def definitions(ctx: Context) -> dict[str, ToolDefinition]:
        document = await backend.document(ctx)
        if not known or known[0][0] is not document:
            known[:] = [(document, {d.name: d for d in tools.definitions(document)})]
        return known[0][1]

    async def list_tools(
        ctx: Context, _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=d.name, description=d.description, input_schema=d.input_schema)
                for d in (await definitions(ctx)).values()
            ]
        )

    async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = (await definitions(ctx)).get(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        arguments = params.arguments or {}
        try:
            check_arguments(tool, arguments)
            answer = await backend.call(ctx, tool, arguments)
        except ToolError as exc:
            return _failed(exc.text)
        text = json.dumps(answer, ensure_ascii=False, indent=2)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=answer
        )

    return Server(
        "torale",
        version=__version__,
        title="Torale",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
