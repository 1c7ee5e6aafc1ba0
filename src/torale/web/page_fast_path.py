"""Serve cached pages (`web.page_cache`) before FastAPI routing.

The tasks page and a task page are what a signed-in browser opens most. Once one is cached,
answering it is a session lookup, a dictionary lookup and a join; FastAPI's routing and
dependency solving would cost more than all of that (bench/RESULTS.md, web section). So this
middleware answers a *clean hit* itself and hands every other request, unchanged, to the route:

- only `GET /tasks` (with no query, or only `state` and `page` in their plain form) and
  `GET /tasks/{id}` (the id in its canonical form), not htmx requests;
- only a live session that `web.viewer.identify` finds;
- only a page already in the cache (the route fills it, under the same key).

It holds no rule of its own: the viewer is identified and admitted (deactivation, rate limit)
by `web.viewer`, the keys are `page_cache`'s, a refusal is the route's error page. Nothing is
counted before the request is known to be a hit, so a request that falls through is counted
once, by the route. The answer is the route's: same body, same headers
(tests/web/test_page_fast_path.py checks it).
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qsl

from starlette.requests import Request, cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from torale.auth.sessions import COOKIE_NAME
from torale.errors import ToraleError
from torale.scope_state import ROUTE_TEMPLATE, scope_state
from torale.state import AppState
from torale.statuses import TaskState
from torale.web import viewer as viewers
from torale.web.page_cache import PageKey, task_page_key, tasks_page_key
from torale.web.routing import error_page

TASKS_PATH = "/tasks"
TASK_PATH = "/tasks/{task_id}"
_STATES = {state.value: state for state in TaskState} | {"": None}
_MAX_PAGE_DIGITS = 6
_HEADERS = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]


def parse_tasks_query(query_string: bytes) -> tuple[TaskState | None, int] | None:
    """(state, page) of a plain query of the tasks page; None for anything else."""
    state, page = None, 1
    seen: set[str] = set()
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return None
        seen.add(name)
        if name == "state" and value in _STATES:
            state = _STATES[value]
        elif name == "page" and value.isascii() and value.isdigit():
            if len(value) > _MAX_PAGE_DIGITS or int(value) < 1:
                return None
            page = int(value)
        else:
            return None
    return state, page


def _task_id(path: str) -> uuid.UUID | None:
    """The id of `/tasks/{id}` in its canonical form (anything else goes to the route)."""
    text = path[len(TASKS_PATH) + 1 :]
    if len(text) != 36:
        return None
    try:
        task_id = uuid.UUID(text)
    except ValueError:
        return None
    return task_id if str(task_id) == text else None


def _request_bits(scope: Scope) -> tuple[str | None, bool]:
    """The session cookie, and whether htmx sent the request."""
    token, htmx = None, False
    for name, value in scope["headers"]:
        if name == b"cookie":
            token = cookie_parser(value.decode("latin-1")).get(COOKIE_NAME) or token
        elif name == b"hx-request":
            htmx = True
    return token, htmx


class CachedPageMiddleware:
    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].startswith(TASKS_PATH)
            and self.state.pages.enabled
            and await self._serve_hit(scope, receive, send)
        ):
            return
        await self.app(scope, receive, send)

    async def _serve_hit(self, scope: Scope, receive: Receive, send: Send) -> bool:
        path: str = scope["path"]
        query, task_id = None, None
        if path == TASKS_PATH:
            query = parse_tasks_query(scope["query_string"])
            if query is None:
                return False
        else:
            task_id = _task_id(path)
            if task_id is None or scope["query_string"]:
                return False
        token, htmx = _request_bits(scope)
        if token is None or htmx:
            return False
        state = self.state
        try:
            viewer = await viewers.identify(state, token)
        except Exception:  # an unreachable database: the route will answer it
            return False
        if viewer is None:
            return False
        key: PageKey
        if query is not None:
            wanted, number = query
            key = tasks_page_key(viewer.user, state=wanted, text="", page=number, fragment=False)
        else:
            assert task_id is not None
            key = task_page_key(viewer.user, task_id, state.changes)
        page = state.pages.get(key)
        if page is None:
            return False

        # A hit: from here on the request is ours, counted once.
        scope_state(scope)[ROUTE_TEMPLATE] = TASKS_PATH if query is not None else TASK_PATH
        try:
            if not await viewers.admit(state, viewer):
                return False  # deactivated: nothing was counted; the route signs them out
        except ToraleError as refusal:
            await error_page(Request(scope), refusal.status_code, refusal.detail)(
                scope, receive, send
            )
            return True
        body = page.fill(viewer.csrf_token)
        headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True
