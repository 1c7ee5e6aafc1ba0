"""Serve `GET /api/v1/tasks` for API keys before FastAPI routing.

Listing tasks is what clients poll. A cached page (see `list_cache`) is a hash, a dictionary
lookup and a counter increment; FastAPI's routing and dependency solving would cost several
times that, and on a miss as much as the query itself (measured in bench/RESULTS.md). So this
middleware answers a *clean request* itself, from the cache or through the same
`actions.list_tasks_body` the route calls, and hands every other request, unchanged, to the
route:

- only an API key (tokens go to the route) that `auth.authenticate` identifies;
- only a query of the documented parameters in their plain form (anything else, including
  every invalid value, goes to the route, which gives the documented 422).

It holds no rule of its own: the caller is identified and admitted (deactivation, key usage,
rate limit, their refusals) by `auth.authenticate`, the page bounds are `pagination`'s, the
states `statuses.TaskState`, the path the tasks router's, the page `actions.list_tasks_body`,
refusals and failures `errors.response_for` (what the route's handlers answer). Nothing is
counted before the caller is identified, so a request that falls through is counted once, by
the route. The answer is the same body and headers the route gives, which
tests/tasks/test_list_fast_path.py checks.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from torale.auth.authenticate import bearer_credential, client_address
from torale.auth.keys import looks_like_api_key
from torale.errors import response_for
from torale.pagination import DEFAULT_LIMIT, MAX_LIMIT, MAX_PAGE, PageParams
from torale.runtime import Runtime
from torale.scope_state import ROUTE_TEMPLATE, scope_state
from torale.state import AppState
from torale.statuses import TaskState
from torale.tasks.actions import list_tasks_body
from torale.tasks.router import list_tasks
from torale.tasks.router import router as tasks_router

LIST_PATH = str(tasks_router.url_path_for(list_tasks.__name__))
_STATES = {state.value: state for state in TaskState}
_BOOLS = {"true": True, "false": False}
_MAX_DIGITS = len(str(MAX_PAGE))


def parse_list_query(query_string: bytes) -> tuple[int, int, TaskState | None, bool | None] | None:
    """(page, limit, state, is_active) for a plain, valid query; None for anything else."""
    page, limit, state, is_active = 1, DEFAULT_LIMIT, None, None
    seen: set[str] = set()
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return None
        seen.add(name)
        if name in ("page", "limit"):
            if not value.isascii() or not value.isdigit() or len(value) > _MAX_DIGITS:
                return None
            number = int(value)
            if name == "page":
                page = number
            else:
                limit = number
        elif name == "state" and value in _STATES:
            state = _STATES[value]
        elif name == "is_active" and value in _BOOLS:
            is_active = _BOOLS[value]
        else:
            return None
    if not (1 <= page <= MAX_PAGE and 1 <= limit <= MAX_LIMIT):
        return None
    return page, limit, state, is_active


class TaskListFastPath:
    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state
        self.runtime = Runtime.build(state.run_engine, state.scheduler)  # what the route builds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] == LIST_PATH
            and await self._serve(scope, receive, send)
        ):
            return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> bool:
        credential = bearer_credential(scope)
        if credential is None or not looks_like_api_key(credential):
            return False
        query = parse_list_query(scope["query_string"])
        if query is None:
            return False
        auth = self.state.authenticator
        try:
            auth.check_client(client_address(scope))
            caller = await auth.identify(credential)
        except Exception:  # a refusal or an unreachable database: the route will answer it
            return False

        # A known caller and a valid query: from here on the request is ours, counted once.
        scope_state(scope)[ROUTE_TEMPLATE] = LIST_PATH
        try:
            admission = await auth.admit(caller)
            user = caller.user
            page, limit, state, is_active = query
            body = await list_tasks_body(
                self.runtime,
                self.state.task_lists,
                user_id=user.id,
                tasks_version=user.tasks_version,
                page=PageParams(page=page, limit=limit),
                state=state,
                is_active=is_active,
            )
        except Exception as failure:  # what the route's handlers would answer
            await response_for(failure, f"GET {LIST_PATH}")(scope, receive, send)
            return True
        headers = [
            (b"content-type", b"application/json"),
            *admission.rate_limit_headers,
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True
