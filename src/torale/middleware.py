"""Small pure-ASGI middleware: they run on every request, so they stay cheap."""

from __future__ import annotations

import codecs
import json
from typing import Any

from fastapi import HTTPException as FastAPIHTTPException
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from torale.scope_state import RATE_LIMIT_HEADERS


class TrailingSlashMiddleware:
    """`/api/v1/tasks/` is routed as `/api/v1/tasks`: both forms answer, no redirect."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope = dict(scope)
                scope["path"] = path.rstrip("/") or "/"
                raw = scope.get("raw_path")
                if raw:
                    scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


class BodyTooLargeError(HTTPException):
    """Raised from `receive`; an HTTPException so FastAPI's body parsing passes it on as a 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"Request body too large (limit {max_bytes} bytes)")


MAX_JSON_DEPTH = 32


class JsonTooDeepError(FastAPIHTTPException):
    """Raised from `receive`: parsing JSON this deep could exhaust Python's recursion limit."""

    def __init__(self) -> None:
        super().__init__(
            422,
            [
                {
                    "loc": ["body"],
                    "msg": f"JSON is nested too deeply (more than {MAX_JSON_DEPTH} levels)",
                    "type": "json_too_deep",
                }
            ],
        )


class JsonNotUtf8Error(FastAPIHTTPException):
    """Raised from `receive`: JSON must be UTF-8 (RFC 8259), so anything else is refused early."""

    def __init__(self) -> None:
        super().__init__(
            422,
            [{"loc": ["body"], "msg": "JSON must be encoded as UTF-8", "type": "json_invalid"}],
        )


class JsonDepth:
    """Tracks the nesting depth of a JSON document as its bytes stream in (strings skipped)."""

    __slots__ = ("depth", "escaped", "in_string")

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def feed(self, chunk: bytes) -> bool:
        """False once the document is nested deeper than MAX_JSON_DEPTH."""
        if not self.in_string and b"[" not in chunk and b"{" not in chunk and b'"' not in chunk:
            return True  # nothing that opens a level or a string (the common case for tails)
        for byte in chunk:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif byte == 0x5C:  # backslash
                    self.escaped = True
                elif byte == 0x22:  # quote
                    self.in_string = False
            elif byte == 0x22:
                self.in_string = True
            elif byte in (0x5B, 0x7B):  # [ {
                self.depth += 1
                if self.depth > MAX_JSON_DEPTH:
                    return False
            elif byte in (0x5D, 0x7D):  # ] }
                self.depth -= 1
        return True


class BodySizeLimitMiddleware:
    """413 for request bodies over the limit, by Content-Length or as a chunked body streams;
    422 for JSON nested deeper than MAX_JSON_DEPTH or not UTF-8, before anything parses it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "Invalid Content-Length header")
                    return
                if declared > self.max_bytes:
                    await _send_error(send, 413, BodyTooLargeError(self.max_bytes).detail)
                    return
                break

        received = 0
        response_started = False
        is_json = _is_json_request(scope)
        depth = JsonDepth() if is_json else None
        utf8 = codecs.getincrementaldecoder("utf-8")() if is_json else None

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                received += len(body)
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
                if depth is not None and not depth.feed(body):
                    raise JsonTooDeepError
                if utf8 is not None:
                    try:
                        utf8.decode(body, final=not message.get("more_body", False))
                    except UnicodeDecodeError:
                        raise JsonNotUtf8Error from None
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLargeError, JsonTooDeepError, JsonNotUtf8Error) as exc:
            if not response_started:
                await _send_error(send, exc.status_code, exc.detail)


class RateLimitHeadersMiddleware:
    """Adds the rate-limit headers the auth dependency computed to every response, errors too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = scope.get("state", {}).get(RATE_LIMIT_HEADERS)
                if extra:
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_json_request(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";")[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


async def _send_error(send: Send, status: int, detail: Any) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
