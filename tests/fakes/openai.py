"""An OpenAI-compatible chat-completions server whose answers are scripted by the test.

pydantic-ai (`OpenAIChatModel` + `OpenAIProvider(base_url=fake.url + "/v1")`) asks for structured
output through a tool named ``final_result``; a `ToolCall` reply answers it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import Failure, FakeService

__all__ = [
    "ChatRequest",
    "Delay",
    "Error",
    "FakeOpenAI",
    "Reply",
    "Script",
    "Text",
    "ToolCall",
    "example_for_schema",
    "sequence",
    "tokens_for",
    "verdict_rules",
]


# -- replies ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolCall:
    """Call a tool (by default the request's output tool); a str `arguments` is sent verbatim.

    When the request offers no tools (pydantic-ai `NativeOutput`/`PromptedOutput`), the arguments
    are sent as the message content instead, so the same scripts serve every output mode.
    """

    arguments: dict[str, Any] | str
    name: str | None = None


@dataclass(frozen=True)
class Text:
    """A plain assistant message (finish_reason "stop")."""

    content: str


@dataclass(frozen=True)
class Error:
    """An HTTP error; `body=None` sends an OpenAI-shaped error object."""

    status: int = 500
    body: Any = None
    headers: Mapping[str, str] | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` on the server, then answer with `then`."""

    seconds: float
    then: Reply = field(default_factory=lambda: Text(""))


Reply = ToolCall | Text | Error | Delay


@dataclass(frozen=True)
class ChatRequest:
    """A parsed chat-completions request."""

    index: int
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    tool_choice: Any
    output_tool: str | None
    prompt_text: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def tool_names(self) -> list[str]:
        return [str(t.get("function", {}).get("name")) for t in self.tools]

    @property
    def output_schema(self) -> dict[str, Any] | None:
        """JSON schema of the output tool's parameters, if the request has one."""
        for tool in self.tools:
            function = tool.get("function", {})
            if function.get("name") == self.output_tool:
                params = function.get("parameters")
                return params if isinstance(params, dict) else None
        return None

    @property
    def response_schema(self) -> dict[str, Any] | None:
        """Schema of a ``response_format: json_schema`` request (pydantic-ai NativeOutput)."""
        fmt = self.body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            schema = fmt.get("json_schema", {}).get("schema")
            return schema if isinstance(schema, dict) else None
        return None

    def text_of(self, role: str) -> str:
        """Concatenated text of the messages with this role ("system", "user", "tool", ...)."""
        return "\n".join(_content_text(m) for m in self.messages if m.get("role") == role)


Script = Callable[[ChatRequest], Reply]


# -- ready-made scripts ----------------------------------------------------------------------
_CHANGES = re.compile(r"^<changes>$.*?^</changes>$", re.DOTALL | re.MULTILINE)


def verdict_rules(
    rules: Sequence[tuple[str, Mapping[str, Any] | Reply]],
    default: Mapping[str, Any] | Reply,
    *,
    case_sensitive: bool = True,
) -> Script:
    """Answer with the first rule whose substring occurs in the request's prompt text.

    A rule's answer is a dict (sent as the output tool's arguments) or any `Reply`. The text
    of a `<changes>` element (Torale's diff since the earlier check, which quotes the old text
    too) is not looked at: the rules judge the evidence, as a model does.
    """

    def as_reply(answer: Mapping[str, Any] | Reply) -> Reply:
        if isinstance(answer, ToolCall | Text | Error | Delay):
            return answer
        return ToolCall(dict(answer))

    compiled = [(needle, as_reply(answer)) for needle, answer in rules]
    fallback = as_reply(default)

    def script(request: ChatRequest) -> Reply:
        text = _CHANGES.sub("", request.prompt_text)
        haystack = text if case_sensitive else text.lower()
        for needle, reply in compiled:
            if (needle if case_sensitive else needle.lower()) in haystack:
                return reply
        return fallback

    return script


def sequence(*replies: Reply | Mapping[str, Any]) -> Script:
    """Answer with the given replies in order; the last one repeats forever."""
    if not replies:
        raise ValueError("sequence() needs at least one reply")
    items: list[Reply] = [
        r if isinstance(r, ToolCall | Text | Error | Delay) else ToolCall(dict(r)) for r in replies
    ]
    lock = threading.Lock()
    position = 0

    def script(request: ChatRequest) -> Reply:
        nonlocal position
        with lock:
            reply = items[min(position, len(items) - 1)]
            position += 1
        return reply

    return script


def example_for_schema(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """A minimal value valid for a (pydantic-generated) JSON schema."""
    root = schema if root is None else root
    if "$ref" in schema:
        ref = str(schema["$ref"])
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return example_for_schema(target, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return example_for_schema(options[0], root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props: Mapping[str, Any] = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {name: example_for_schema(props[name], root) for name in required if name in props}
    if kind == "array":
        minimum = int(schema.get("minItems", 0))
        items = schema.get("items", {})
        return [example_for_schema(items, root) for _ in range(minimum)]
    if kind == "string":
        return "x" * int(schema.get("minLength", 0))
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0.0))
    if kind == "boolean":
        return False
    return None


def default_script(request: ChatRequest) -> Reply:
    """A minimal valid instance of the output tool's (or response format's) schema, else "ok"."""
    schema = request.output_schema or request.response_schema
    if schema is not None:
        return ToolCall(example_for_schema(schema))
    return Text("ok")


# -- the server ------------------------------------------------------------------------------
def tokens_for(text: str) -> int:
    """The fake's deterministic token count for a text."""
    return len(text) // 4 + 1


def _content_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _pick_output_tool(tools: list[dict[str, Any]], tool_choice: Any) -> str | None:
    if isinstance(tool_choice, dict):
        name = tool_choice.get("function", {}).get("name")
        if isinstance(name, str):
            return name
    names = [str(t.get("function", {}).get("name")) for t in tools]
    for name in names:
        if name.startswith("final_result"):
            return name
    return names[0] if names else None


_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


class FakeOpenAI(FakeService):
    """OpenAI-compatible ``POST /v1/chat/completions`` (non-streaming) and ``GET /v1/models``.

    `api_key=None` accepts any Authorization header; a string demands ``Bearer <api_key>``.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        api_key: str | None = None,
        models: Sequence[str] = ("fake-model",),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self._initial_script: Script = script or default_script
        self._script: Script = self._initial_script
        self.api_key = api_key
        self.models = list(models)
        self._chat: list[ChatRequest] = []
        self._replies: list[Reply] = []
        self._prompt_tokens = 0
        self._completion_tokens = 0

    tokens_for = staticmethod(tokens_for)

    def build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # -- configuration ---------------------------------------------------------------------
    @property
    def script(self) -> Script:
        return self._script

    @script.setter
    def script(self, script: Script) -> None:
        with self._lock:
            self._script = script

    def reset(self) -> None:
        """Forget calls and failures and restore the constructor's script."""
        super().reset()
        with self._lock:
            self._script = self._initial_script
            self._chat.clear()
            self._replies.clear()
            self._prompt_tokens = self._completion_tokens = 0

    # -- observation -----------------------------------------------------------------------
    @property
    def chat_requests(self) -> list[ChatRequest]:
        """Every parsed chat-completions request, oldest first (`requests` has the raw ones)."""
        with self._lock:
            return list(self._chat)

    @property
    def replies(self) -> list[Reply]:
        """What was answered to each chat request (injected failures appear as `Error`)."""
        with self._lock:
            return list(self._replies)

    @property
    def last(self) -> ChatRequest:
        with self._lock:
            return self._chat[-1]

    @property
    def total_prompt_tokens(self) -> int:
        with self._lock:
            return self._prompt_tokens

    @property
    def total_completion_tokens(self) -> int:
        with self._lock:
            return self._completion_tokens

    # -- protocol --------------------------------------------------------------------------
    def error_response(self, failure: Failure) -> Response:
        body = failure.body
        if body is None:
            kind, code = _ERROR_TYPES.get(failure.status, ("server_error", None))
            body = {
                "error": {
                    "message": f"Fake OpenAI error (HTTP {failure.status})",
                    "type": kind,
                    "param": None,
                    "code": code,
                }
            }
        if isinstance(body, str | bytes):
            return Response(body, failure.status, headers=self._failure_headers(failure))
        return JSONResponse(body, failure.status, headers=self._failure_headers(failure))

    async def _models(self, request: Request) -> Response:
        _, failure = await self._admit(request)
        if failure is not None:
            return self.error_response(failure)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def _completions(self, request: Request) -> Response:
        record, failure = await self._admit(request)
        if failure is None and self.api_key is not None:
            auth = record.headers.get("authorization", "")
            if auth != f"Bearer {self.api_key}":
                return self.error_response(Failure(401))
        try:
            body = record.json()
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("expected a JSON object with 'messages'")
        except ValueError as exc:
            return self.error_response(Failure(400, body={"error": {"message": str(exc)}}))
        if body.get("stream"):
            return self.error_response(
                Failure(400, body={"error": {"message": "FakeOpenAI does not stream"}})
            )
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
        tool_choice = body.get("tool_choice")
        with self._lock:
            index = len(self._chat)
            chat = ChatRequest(
                index=index,
                model=str(body.get("model", "")),
                messages=body["messages"],
                tools=tools,
                tool_choice=tool_choice,
                output_tool=_pick_output_tool(tools, tool_choice),
                prompt_text="\n".join(_content_text(m) for m in body["messages"]),
                body=body,
                headers=record.headers,
            )
            self._chat.append(chat)
            script = self._script
        reply: Reply
        if failure is not None:
            reply = Error(failure.status, failure.body, failure.headers, failure.retry_after)
        else:
            try:
                reply = script(chat)
            except Exception as exc:
                reply = Error(500, {"error": {"message": f"script raised {exc!r}"}})
        with self._lock:
            self._replies.append(reply)
        while isinstance(reply, Delay):
            await asyncio.sleep(reply.seconds)
            reply = reply.then
        return self._render(chat, reply)

    def _render(self, chat: ChatRequest, reply: Reply) -> Response:
        if isinstance(reply, Error):
            failure = Failure(reply.status, reply.body, reply.headers, reply.retry_after)
            return self.error_response(failure)
        message: dict[str, Any]
        if isinstance(reply, ToolCall) and not chat.tools:
            # No tools offered (NativeOutput / PromptedOutput): the JSON goes in the content.
            arguments = (
                reply.arguments if isinstance(reply.arguments, str) else json.dumps(reply.arguments)
            )
            reply = Text(arguments)
        if isinstance(reply, ToolCall):
            arguments = (
                reply.arguments if isinstance(reply.arguments, str) else json.dumps(reply.arguments)
            )
            name = reply.name or chat.output_tool or "final_result"
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_fake_{chat.index}",
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                ],
            }
            finish_reason, produced = "tool_calls", arguments
        elif isinstance(reply, Text):
            message = {"role": "assistant", "content": reply.content}
            finish_reason, produced = "stop", reply.content
        else:
            return self.error_response(
                Failure(500, body={"error": {"message": f"script returned {reply!r}"}})
            )
        prompt_tokens, completion_tokens = tokens_for(chat.prompt_text), tokens_for(produced)
        with self._lock:
            self._prompt_tokens += prompt_tokens
            self._completion_tokens += completion_tokens
        return JSONResponse(
            {
                "id": f"chatcmpl-fake-{chat.index}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": chat.model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish_reason,
                        "message": message,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )
