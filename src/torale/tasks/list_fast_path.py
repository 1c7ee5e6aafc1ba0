"""Serve cached pages of `GET /api/v1/tasks` before FastAPI routing.

Listing tasks is what clients poll. Once a page is cached (see `list_cache`), answering it is
a hash, a dictionary lookup and a counter increment; FastAPI's routing and dependency solving
would cost several times that (measured in bench/RESULTS.md). So this middleware answers a
*clean hit* itself and hands every other request, unchanged, to the route:

- only an API key (tokens go to the route), that authenticates, of an active user;
- only a query of the documented parameters in their plain form (anything else, including
  every invalid value, goes to the route, which gives the documented 422);
- only a page already in the cache (the route fills it).

Nothing with a side effect happens before the request is known to be a hit, so a request that
falls through is counted once, by the route. The answer is the same body and headers the route
gives, which tests/tasks/test_list_fast_path.py checks.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from torale.auth.keys import hash_api_key, looks_like_api_key
from torale.retry_after import retry_after_header
from torale.scope_state import ROUTE_TEMPLATE, scope_state
from torale.state import AppState
from torale.tasks.list_cache import ListKey

LIST_PATH = "/api/v1/tasks"
_STATES = frozenset({"active", "paused", "completed"})
_BOOLS = {"true": True, "false": False}


def parse_list_query(query_string: bytes) -> tuple[int, int, str | None, bool | None] | None:
    """(page, limit, state, is_active) for a plain, valid query; None for anything else."""
    page, limit, state, is_active = 1, 20, None, None
    seen: set[str] = set()
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return None
        seen.add(name)
        if name in ("page", "limit"):
            if not value.isascii() or not value.isdigit() or len(value) > 7:
                return None
            number = int(value)
            if name == "page":
                page = number
            else:
                limit = number
        elif name == "state" and value in _STATES:
            state = value
        elif name == "is_active" and value in _BOOLS:
            is_active = _BOOLS[value]
        else:
            return None
    if not (1 <= page <= 1_000_000 and 1 <= limit <= 100):
        return None
    return page, limit, state, is_active


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class CachedTaskListMiddleware:
    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] == LIST_PATH
            and await self._serve_hit(scope, send)
        ):
            return
        await self.app(scope, receive, send)

    async def _serve_hit(self, scope: Scope, send: Send) -> bool:
        state = self.state
        token = _bearer_token(scope)
        if token is None or not looks_like_api_key(token):
            return False
        query = parse_list_query(scope["query_string"])
        if query is None:
            return False
        try:
            owner = await state.key_lookup.find(hash_api_key(token, state.hashing_key))
        except Exception:  # the route will give the documented error (503)
            return False
        if owner is None or owner.revoked or not owner.user.is_active:
            return False
        body = state.task_lists.get(ListKey(owner.user.id, owner.user.tasks_version, *query))
        if body is None:
            return False

        # A hit: from here on the request is ours, counted once.
        scope_state(scope)[ROUTE_TEMPLATE] = LIST_PATH
        state.key_usage.record(owner.key_id)
        status = 200
        headers = [(b"content-type", b"application/json")]
        result = await state.rate_limiter.hit(f"key:{owner.key_id}")
        if result is not None:
            headers += result.headers()
            if not result.allowed:
                status = 429
                body = json.dumps({"detail": f"Rate limit exceeded: {result.exceeded}"}).encode()
                headers.append((b"retry-after", retry_after_header(result.retry_after).encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True
