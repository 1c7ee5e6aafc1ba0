"""The list fast path answers exactly as the route would, and only clean requests: an API key
it identifies and a plain, valid query (cached page or not)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from tests.fixtures.users import ApiUser, set_user_active
from torale.tasks.list_fast_path import TaskListFastPath, parse_list_query

TASKS = "/api/v1/tasks"


class Spy:
    """Stands in for the rest of the app: records whether the request fell through to it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def call(
    middleware: TaskListFastPath,
    key: str | None,
    query: bytes = b"",
    path: str = TASKS,
    client: tuple[str, int] = ("127.0.0.1", 40000),
) -> tuple[int, dict[str, str], bytes]:
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": headers,
        "client": client,
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


@pytest.fixture
def fast(app: FastAPI) -> tuple[TaskListFastPath, Spy]:
    spy = Spy()
    return TaskListFastPath(spy, app.state.torale), spy


async def test_hits_and_misses_are_the_routes_answer(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fast: tuple[TaskListFastPath, Spy],
) -> None:
    middleware, spy = fast
    await client.post(TASKS, json={"search_query": "q"}, headers=alice.headers)
    missed = await call(middleware, alice.key)  # not cached yet: read, answered and cached
    routed = await client.get(f"{TASKS}?via=route", headers=alice.headers)
    hit = await call(middleware, alice.key)
    assert spy.calls == 0
    for status, headers, body in (missed, hit):
        assert status == 200
        assert body == routed.content
        assert headers["content-type"] == routed.headers["content-type"]
        assert headers["content-length"] == str(len(body))
        assert headers["x-ratelimit-limit"] == routed.headers["x-ratelimit-limit"]
    remaining = [int(h["x-ratelimit-remaining"]) for h in (missed[1], routed.headers, hit[1])]
    assert remaining == [remaining[0], remaining[0] - 1, remaining[0] - 2]  # each counted once
    # A filtered page, and one past the end, are the route's too.
    for query in (b"state=paused", b"is_active=true&limit=5", b"page=3"):
        status, _, body = await call(middleware, alice.key, query)
        routed = await client.get(f"{TASKS}?{query.decode()}&via=route", headers=alice.headers)
        assert (status, body) == (routed.status_code, routed.content), query
    assert spy.calls == 0


async def test_everything_but_a_clean_request_falls_through(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fast: tuple[TaskListFastPath, Spy],
) -> None:
    middleware, spy = fast
    await client.get(TASKS, headers=alice.headers)  # caches alice's first page
    limiter = app.state.torale.rate_limiter
    minute = limiter.items[0].key_for(f"user:{alice.id}")
    before = await limiter.storage.get(minute)
    assert before == 1
    cases: list[tuple[str | None, bytes, str]] = [
        (None, b"", TASKS),
        ("sk_" + "x" * 43, b"", TASKS),
        ("not-an-api-key-token", b"", TASKS),
        (alice.key, b"page=0", TASKS),
        (alice.key, b"limit=500", TASKS),
        (alice.key, b"page=1&page=2", TASKS),
        (alice.key, b"state=running", TASKS),
        (alice.key, b"is_active=yes", TASKS),
        (alice.key, b"via=route", TASKS),
        (alice.key, b"", TASKS + "/x"),
    ]
    for key, query, path in cases:
        status, _, _ = await call(middleware, key, query, path)
        assert status == 599, (key, query, path)
    assert spy.calls == len(cases)
    assert await limiter.storage.get(minute) == before  # nothing counted on the way through


async def test_revocation_and_deactivation_apply_to_cached_pages(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    assert (await client.get(TASKS, headers=alice.headers)).status_code == 200
    assert (await client.get(TASKS, headers=alice.headers)).status_code == 200  # cached
    await set_user_active(app, alice.id, False)
    assert (await client.get(TASKS, headers=alice.headers)).status_code == 403
    await set_user_active(app, alice.id, True)
    assert (await client.get(TASKS, headers=alice.headers)).status_code == 200
    key_id = (await client.get("/auth/api-keys", headers=alice.headers)).json()["items"][0]["id"]
    await client.delete(f"/auth/api-keys/{key_id}", headers=alice.headers)
    assert (await client.get(TASKS, headers=alice.headers)).status_code == 401


@pytest.mark.parametrize("settings_overrides", [{"rate_limits": "3/minute"}])
async def test_rate_limit_counts_hits_once_and_answers_429_like_the_route(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    responses = [await client.get(TASKS, headers=alice.headers) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["2", "1", "0", "0"]
    refused = responses[3]
    assert refused.json() == {"detail": "Rate limit exceeded: 3 per 1 minute"}
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    routed = await client.get(f"{TASKS}?via=route", headers=alice.headers)
    assert routed.status_code == 429
    assert routed.json() == refused.json()


@pytest.mark.parametrize("settings_overrides", [{"auth_failure_limits": "1/minute"}])
async def test_a_throttled_address_falls_through_to_the_route(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fast: tuple[TaskListFastPath, Spy],
) -> None:
    middleware, spy = fast
    assert (await client.get(TASKS, headers=alice.headers)).status_code == 200  # cached now
    assert (await call(middleware, alice.key))[0] == 200  # a clean hit
    bad = "sk_" + "x" * 43
    assert (await client.get(TASKS, headers={"Authorization": f"Bearer {bad}"})).status_code == 401
    refused = await client.get(TASKS, headers={"Authorization": f"Bearer {bad}"})
    assert refused.status_code == 429  # the address (the test client's) is past its budget
    assert (await call(middleware, alice.key))[0] == 599  # the route refuses it, not us
    assert (await call(middleware, alice.key, client=("192.0.2.1", 1)))[0] == 200
    assert spy.calls == 1


async def test_a_deactivated_owner_of_a_cached_page_gets_the_routes_403(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fast: tuple[TaskListFastPath, Spy],
) -> None:
    middleware, _ = fast
    assert (await client.get(TASKS, headers=alice.headers)).status_code == 200
    await set_user_active(app, alice.id, False)
    routed = await client.get(f"{TASKS}?via=route", headers=alice.headers)
    status, headers, body = await call(middleware, alice.key)
    assert (status, body) == (routed.status_code, routed.content)
    assert status == 403
    assert "x-ratelimit-limit" not in headers


@pytest.mark.parametrize(
    ("query", "parsed"),
    [
        (b"", (1, 20, None, None)),
        (b"page=2&limit=5", (2, 5, None, None)),
        (b"state=paused&is_active=false", (1, 20, "paused", False)),
        (b"is_active=true", (1, 20, None, True)),
        (b"limit=100&page=1000000", (1000000, 100, None, None)),
        (b"page=01", (1, 20, None, None)),
    ],
)
def test_parse_plain_queries(
    query: bytes, parsed: tuple[int, int, str | None, bool | None]
) -> None:
    assert parse_list_query(query) == parsed


@pytest.mark.parametrize(
    "query",
    [
        b"page=0",
        b"page=-1",
        b"page=1.5",
        b"page=%D9%A3",  # an Arabic-Indic digit: isdigit() but not what the route accepts
        b"limit=101",
        b"limit=",
        b"page=99999999",
        b"state=Active",
        b"is_active=1",
        b"is_active=on",
        b"limit=5&limit=5",
        b"unknown=1",
    ],
)
def test_everything_else_is_left_to_the_route(query: bytes) -> None:
    assert parse_list_query(query) is None


@pytest.mark.parametrize("settings_overrides", [{"task_list_cache_bytes": 0}])
async def test_cache_can_be_turned_off(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    for _ in range(3):
        response = await client.get(TASKS, headers=alice.headers)
        assert response.status_code == 200
    assert len(app.state.torale.task_lists) == 0
