"""The page fast path answers exactly as the route would, and only for clean cache hits."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from tests.fixtures.users import ApiUser, set_user_active
from tests.fixtures.web import Browserless, api_task
from torale.auth.sessions import COOKIE_NAME
from torale.state import AppState
from torale.web.page_fast_path import CachedPageMiddleware, parse_tasks_query

pytestmark = pytest.mark.timeout(60)


class Spy:
    """Stands in for the rest of the app: records whether the request fell through to it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def fast(app: FastAPI) -> tuple[CachedPageMiddleware, Spy]:
    spy = Spy()
    return CachedPageMiddleware(spy, app.state.torale), spy


async def call(
    middleware: CachedPageMiddleware,
    session: str | None,
    path: str = "/tasks",
    query: bytes = b"",
    extra: list[tuple[bytes, bytes]] | None = None,
    app: FastAPI | None = None,
) -> tuple[int, dict[str, str], bytes]:
    headers = [(b"cookie", f"other=1; {COOKIE_NAME}={session}".encode())] if session else []
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": headers + (extra or []),
        "client": ("127.0.0.1", 40000),
        "app": app,
    }
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        messages.append(message)

    await middleware(scope, receive, send)
    start, body = messages
    return (
        start["status"],
        {k.decode(): v.decode() for k, v in start["headers"]},
        body["body"],
    )


async def test_a_hit_is_the_routes_answer(
    app: FastAPI,
    as_alice: Browserless,
    alice: ApiUser,
    fast: tuple[CachedPageMiddleware, Spy],
) -> None:
    middleware, spy = fast
    task = await api_task(as_alice.client, alice)
    pages = [("/tasks", b""), ("/tasks", b"state=active&page=1"), (f"/tasks/{task['id']}", b"")]
    for path, query in pages:
        assert (await call(middleware, as_alice.session_token, path, query))[0] == 599  # not yet
        routed = await as_alice.get(path + "?" + query.decode() + "&via=route")  # fills it
        assert routed.status_code == 200
        status, headers, body = await call(middleware, as_alice.session_token, path, query)
        assert status == 200
        assert body == routed.content
        assert headers["content-type"] == routed.headers["content-type"]
        assert headers["cache-control"] == routed.headers["cache-control"] == "no-store"
        assert headers["content-length"] == str(len(body))
    assert spy.calls == 3
    # Through the whole app the hit carries the pages' security headers, like the route's.
    whole = await as_alice.get(f"/tasks/{task['id']}")
    assert whole.content == routed.content
    assert "frame-ancestors 'none'" in whole.headers["content-security-policy"]


async def test_everything_but_a_clean_hit_falls_through(
    app: FastAPI,
    as_alice: Browserless,
    as_bob: Browserless,
    alice: ApiUser,
    fast: tuple[CachedPageMiddleware, Spy],
) -> None:
    middleware, spy = fast
    task = await api_task(as_alice.client, alice)
    assert (await as_alice.get("/tasks")).status_code == 200  # cached
    assert (await as_alice.get(f"/tasks/{task['id']}")).status_code == 200  # cached
    state: AppState = app.state.torale
    limiter = state.rate_limiter
    minute = limiter.items[0].key_for(f"user:{alice.id}")
    before = await limiter.storage.get(minute)
    token = as_alice.session_token
    htmx = [(b"hx-request", b"true")]
    cases: list[tuple[str | None, str, bytes, list[tuple[bytes, bytes]] | None]] = [
        (None, "/tasks", b"", None),
        ("not-a-session", "/tasks", b"", None),
        (token, "/tasks", b"", htmx),
        (token, "/tasks", b"q=x", None),
        (token, "/tasks", b"page=0", None),
        (token, "/tasks", b"page=1&page=1", None),
        (token, "/tasks", b"state=nope", None),
        (token, "/tasks", b"page=2", None),  # not cached
        (token, "/tasks/new", b"", None),
        (token, f"/tasks/{task['id']}".upper(), b"", None),
        (token, f"/tasks/{task['id']}", b"x=1", None),
        (token, f"/tasks/{task['id']}", b"", htmx),
        (token, f"/tasks/{task['id']}/edit", b"", None),
        (as_bob.session_token, "/tasks", b"", None),  # bob's page is not cached
        (as_bob.session_token, f"/tasks/{task['id']}", b"", None),  # and this one is not his
    ]
    for session, path, query, extra in cases:
        status, _, _ = await call(middleware, session, path, query, extra)
        assert status == 599, (session, path, query, extra)
    assert spy.calls == len(cases)
    assert await limiter.storage.get(minute) == before  # nothing counted on the way through


@pytest.mark.parametrize("settings_overrides", [{"rate_limits": "3/minute"}])
async def test_rate_limit_counts_hits_once_and_answers_429_like_the_route(
    as_alice: Browserless,
) -> None:
    responses = [await as_alice.get("/tasks") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    routed = await as_alice.get("/tasks?via=route")
    assert routed.status_code == 429
    assert routed.content == responses[3].content
    assert "Too many requests" in routed.text


async def test_a_deactivated_owner_of_a_cached_page_falls_through_to_sign_in(
    app: FastAPI,
    as_alice: Browserless,
    alice: ApiUser,
    fast: tuple[CachedPageMiddleware, Spy],
) -> None:
    middleware, _ = fast
    assert (await as_alice.get("/tasks")).status_code == 200
    assert (await call(middleware, as_alice.session_token))[0] == 200
    await set_user_active(app, alice.id, False)
    assert (await call(middleware, as_alice.session_token))[0] == 599
    response = await as_alice.get("/tasks")
    assert (response.status_code, response.headers["location"]) == (303, "/signin?next=/tasks")


@pytest.mark.parametrize(
    ("query", "parsed"),
    [
        (b"", (None, 1)),
        (b"state=", (None, 1)),
        (b"state=paused&page=3", ("paused", 3)),
        (b"page=01", (None, 1)),
        (b"page=999999", (None, 999999)),
    ],
)
def test_parse_plain_queries(query: bytes, parsed: tuple[str | None, int]) -> None:
    assert parse_tasks_query(query) == parsed


@pytest.mark.parametrize(
    "query",
    [b"page=0", b"page=1000000", b"page=-1", b"page=%C2%B2", b"state=x", b"q=", b"a=1", b"page"],
)
def test_everything_else_is_left_to_the_route(query: bytes) -> None:
    assert parse_tasks_query(query) is None
