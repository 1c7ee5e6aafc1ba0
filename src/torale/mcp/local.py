"""`/mcp` on `torale serve`: the MCP server over Streamable HTTP, inside the API process.

Every request authenticates exactly as an API request does (`auth.authenticate`: the same
API keys and sign-in tokens, the same refusals, counted against the same per-user rate limit,
with the `X-RateLimit-*` headers); the tools then call the actions the API's routes call, for
that caller, in this process (no HTTP round trip): another user's task is a 404 as it is for
the API. Arguments are validated with the routes' own types and the request schemas, and a
refusal carries the message the API would send.

The transport is stateless (no MCP session is kept between requests) and answers JSON, so any
API process can answer any request. The MCP library is loaded, and its session manager
started, on the first request to `/mcp`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from torale.auth.authenticate import MISSING_CREDENTIALS, bearer_credential, client_address
from torale.auth.lookup import AuthenticatedUser
from torale.errors import response_for, validation_error_items
from torale.executions import actions as executions
from torale.executions.preview import PreviewRequest
from torale.mcp.tools import ToolDefinition, ToolError
from torale.pagination import DEFAULT_LIMIT, MAX_LIMIT, MAX_PAGE, PageParams
from torale.runtime import Runtime
from torale.scope_state import CALLER, RATE_LIMIT_HEADERS, scope_state
from torale.sdk.errors import error_for
from torale.statuses import TaskState
from torale.tasks import actions as tasks
from torale.tasks.schemas import SuggestRequest, TaskCreate, TaskUpdate

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from torale.mcp.server import Context
    from torale.state import AppState

M = TypeVar("M", bound=BaseModel)

# The types of the routes' path and query parameters the tools take (tests/mcp checks that
# they are exactly the tools' parameters).
PARAMETERS: dict[str, TypeAdapter[Any]] = {
    "task_id": TypeAdapter(uuid.UUID),
    "page": TypeAdapter(Annotated[int, Field(ge=1, le=MAX_PAGE)]),
    "limit": TypeAdapter(Annotated[int, Field(ge=1, le=MAX_LIMIT)]),
    "state": TypeAdapter(TaskState | None),
    "is_active": TypeAdapter(bool | None),
    "from": TypeAdapter(uuid.UUID | None),
    "to": TypeAdapter(uuid.UUID | None),
}
DEFAULTS: dict[str, Any] = {"page": 1, "limit": DEFAULT_LIMIT}
# The request schema of each tool that takes a body: the route's.
BODIES: dict[str, type[BaseModel]] = {
    "create_task": TaskCreate,
    "update_task": TaskUpdate,
    "preview_task": PreviewRequest,
    "suggest_task": SuggestRequest,
}


class Call:
    """A tool call's arguments, validated as the route validates its request."""

    def __init__(self, tool: ToolDefinition, arguments: dict[str, Any]) -> None:
        self.values: dict[str, Any] = {}
        self.body: BaseModel | None = None
        errors: list[dict[str, Any]] = []
        for name, place in tool.places.items():
            if place == "body" or (name not in arguments and name in DEFAULTS):
                continue
            try:
                self.values[name] = PARAMETERS[name].validate_python(arguments.get(name))
            except ValidationError as exc:
                errors += _located(exc, [place, name])
        schema = BODIES.get(tool.name)
        if schema is not None:
            sent = {k: v for k, v in arguments.items() if tool.places.get(k) == "body"}
            try:
                self.body = schema.model_validate(sent)
            except ValidationError as exc:
                errors += _located(exc, ["body"])
        if errors:
            raise _refusal(422, {"detail": errors})

    def body_of(self, schema: type[M]) -> M:
        assert isinstance(self.body, schema)
        return self.body

    def __getitem__(self, name: str) -> Any:
        return self.values.get(name, DEFAULTS.get(name))

    @property
    def page(self) -> PageParams:
        return PageParams(page=self["page"], limit=self["limit"])


def _located(exc: ValidationError, prefix: list[str]) -> list[dict[str, Any]]:
    items = validation_error_items(exc.errors())
    for item in items:
        item["loc"] = [*prefix, *item["loc"]]
    return items


def _refusal(status: int, body: Any) -> ToolError:
    # The SDK's reading of an error body: both MCP servers word refusals alike.
    return ToolError(status, error_for(status, body, None).message)


Handler = Callable[[Runtime, AuthenticatedUser, Call, "AppState"], Awaitable[Any]]


async def _list_tasks(rt: Runtime, user: AuthenticatedUser, a: Call, state: AppState) -> Any:
    body = await tasks.list_tasks_body(
        rt,
        state.task_lists,  # the API's cache of pages: the same answer, and kept current
        user_id=user.id,
        tasks_version=user.tasks_version,
        page=a.page,
        state=a["state"],
        is_active=a["is_active"],
    )
    return json.loads(body)


async def _delete_task(rt: Runtime, user: AuthenticatedUser, a: Call, _: AppState) -> Any:
    await tasks.delete_task(rt, user_id=user.id, task_id=a["task_id"])
    return {"deleted": str(a["task_id"])}


HANDLERS: dict[str, Handler] = {
    "list_tasks": _list_tasks,
    "get_task": lambda rt, user, a, _: tasks.get_task(rt, user_id=user.id, task_id=a["task_id"]),
    "create_task": lambda rt, user, a, _: tasks.create_task(
        rt, user_id=user.id, data=a.body_of(TaskCreate)
    ),
    "update_task": lambda rt, user, a, _: tasks.update_task(
        rt,
        user_id=user.id,
        task_id=a["task_id"],
        data=a.body_of(TaskUpdate),
    ),
    "pause_task": lambda rt, user, a, _: tasks.pause_task(
        rt, user_id=user.id, task_id=a["task_id"]
    ),
    "resume_task": lambda rt, user, a, _: tasks.resume_task(
        rt, user_id=user.id, task_id=a["task_id"]
    ),
    "delete_task": _delete_task,
    "run_task": lambda rt, user, a, _: executions.run_now(
        rt, user_id=user.id, task_id=a["task_id"], wait=True
    ),
    "preview_task": lambda rt, user, a, _: executions.preview(
        rt, data=a.body_of(PreviewRequest), user_id=user.id
    ),
    "list_executions": lambda rt, user, a, _: executions.list_executions(
        rt, user_id=user.id, task_id=a["task_id"], page=a.page
    ),
    "list_notifications": lambda rt, user, a, _: executions.list_executions(
        rt, user_id=user.id, task_id=a["task_id"], page=a.page, notified_only=True
    ),
    "diff_runs": lambda rt, user, a, _: executions.diff(
        rt, user_id=user.id, task_id=a["task_id"], from_id=a["from"], to_id=a["to"]
    ),
    "suggest_task": lambda rt, user, a, _: tasks.suggest_task(
        rt,
        user_id=user.id,
        prompt=a.body_of(SuggestRequest).prompt,
    ),
}


class LocalTools:
    """The tools, carried out by the API's actions in this process, for the request's caller."""

    def __init__(self, state: AppState, openapi: Callable[[], dict[str, Any]]) -> None:
        self.state = state
        self.openapi = openapi

    async def document(self, ctx: Context) -> dict[str, Any]:
        return self.openapi()  # FastAPI builds it once

    async def call(
        self, ctx: Context, tool: ToolDefinition, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        request = ctx.request
        user = request.scope.get("state", {}).get(CALLER) if request is not None else None
        if not isinstance(user, AuthenticatedUser):  # the endpoint always sets it
            raise _refusal(401, {"detail": MISSING_CREDENTIALS})
        rt = Runtime.build(self.state.run_engine, self.state.scheduler)
        try:
            answer = await HANDLERS[tool.name](rt, user, Call(tool, arguments), self.state)
        except ToolError:
            raise
        except Exception as exc:
            response = response_for(exc, f"MCP {tool.name}")
            raise _refusal(response.status_code, json.loads(bytes(response.body))) from None
        if isinstance(answer, BaseModel):
            dumped: dict[str, Any] = answer.model_dump(mode="json")
            return dumped
        result: dict[str, Any] = answer
        return result


# A JSON-RPC error code of the range left to servers: the request was refused before MCP.
REFUSED = -32000


def refusal(exc: Exception, where: str) -> JSONResponse:
    """The API's answer to a request `/mcp` refuses (its status, headers and `{"detail"}`),
    which is a JSON-RPC error as well, so that an MCP client shows the message rather than
    only the status."""
    answer = response_for(exc, where)
    body = json.loads(bytes(answer.body))
    if isinstance(body.get("detail"), str):
        message = f"{body['detail']} (HTTP {answer.status_code})"
        body |= {"jsonrpc": "2.0", "id": None, "error": {"code": REFUSED, "message": message}}
    headers = {
        name: value
        for name, value in answer.headers.items()
        if name not in ("content-length", "content-type")
    }
    return JSONResponse(body, status_code=answer.status_code, headers=headers)


class McpEndpoint:
    """The ASGI app at `/mcp`: the caller authenticated as for any API route, then the MCP
    server (started on first use, stopped with the app: `close`)."""

    def __init__(self, state: AppState, openapi: Callable[[], dict[str, Any]]) -> None:
        self.state = state
        self.openapi = openapi
        self._manager: StreamableHTTPSessionManager | None = None
        self._starting = asyncio.Lock()
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            admission = await self.state.authenticator.authenticate(
                bearer_credential(scope), client_address(scope)
            )
        except Exception as exc:
            await refusal(exc, f"{scope.get('method')} /mcp")(scope, receive, send)
            return
        state = scope_state(scope)
        if admission.rate_limit_headers:
            state[RATE_LIMIT_HEADERS] = admission.rate_limit_headers
        state[CALLER] = admission.user
        manager = self._manager or await self._start()
        await manager.handle_request(scope, receive, send)

    async def _start(self) -> StreamableHTTPSessionManager:
        async with self._starting:
            if self._manager is None:
                from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
                from mcp.server.transport_security import TransportSecuritySettings

                from torale.mcp.server import build_server

                manager = StreamableHTTPSessionManager(
                    app=build_server(LocalTools(self.state, self.openapi)),
                    json_response=True,
                    stateless=True,
                    # The DNS-rebinding guard is for servers without credentials: every request
                    # here carries an API key, which a rebound page cannot have.
                    security_settings=TransportSecuritySettings(
                        enable_dns_rebinding_protection=False
                    ),
                )
                running = asyncio.Event()
                runner = asyncio.create_task(self._run(manager, running))
                waiting = asyncio.ensure_future(running.wait())
                await asyncio.wait([runner, waiting], return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                if runner.done():
                    runner.result()  # it could not start: raise why
                self._runner, self._manager = runner, manager
        return self._manager

    async def _run(self, manager: StreamableHTTPSessionManager, running: asyncio.Event) -> None:
        async with manager.run():
            running.set()
            await self._stop.wait()

    async def close(self) -> None:
        """Stop the MCP server (requests under way are cancelled), if it was started."""
        if self._runner is not None:
            self._stop.set()
            await self._runner
