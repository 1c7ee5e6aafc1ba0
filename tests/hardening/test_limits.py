"""Oversized and deeply nested JSON is refused early — before anything parses or stores it —
on every route of the route table that takes a body: 413 for a body over
TORALE_MAX_BODY_BYTES (declared by Content-Length or streamed chunked), 422 `json_too_deep`
for JSON nested deeper than 32 levels. The refusals are documented statuses of the operation,
and nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.fixtures.users import ApiUser
from tests.hardening.routes import Operation, operations
from torale.db.models import ApiKey, Base, Task
from torale.middleware import MAX_JSON_DEPTH

LIMIT = 4096
CHUNK = 512


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    return {"max_body_bytes": LIMIT}


def deep(levels: int) -> Any:
    """A JSON value `levels` arrays deep."""
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def deep_body(depth: int) -> bytes:
    """A task body whose document is `depth` levels deep in all (the object itself is one)."""
    return json.dumps({"search_query": "q", "context": deep(depth - 1)}).encode()


class Stream:
    """A chunked request body that counts how much of it the server consumed."""

    def __init__(self, head: bytes, total: int, filler: bytes = b" ") -> None:
        self.head = head
        self.total = total
        self.filler = filler
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        data = self.head
        while self.sent < self.total:
            if not data:
                data = self.filler * CHUNK
            chunk, data = data[:CHUNK], data[CHUNK:]
            self.sent += len(chunk)
            yield chunk


async def snapshot(app: FastAPI, client: httpx.AsyncClient, user: ApiUser) -> Any:
    config = (await client.get("/api/v1/webhooks/config", headers=user.headers)).json()
    async with app.state.torale.sessions() as session:
        counts = {
            table.name: await session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }
        newest_key = await session.scalar(select(func.max(ApiKey.created_at)))
        tasks = [t.updated_at for t in (await session.scalars(select(Task))).all()]
    return counts, newest_key, tasks, config


async def body_routes(
    app: FastAPI, client: httpx.AsyncClient, user: ApiUser
) -> list[tuple[Operation, str]]:
    """Every operation that takes a body, with a URL aimed at the user's own resources."""
    created = await client.post("/api/v1/tasks", json={"search_query": "q"}, headers=user.headers)
    keys = (await client.get("/auth/api-keys", headers=user.headers)).json()["items"]
    values = {
        "task_id": created.json()["id"],
        "key_id": keys[0]["id"],
        "user_id": str(user.id),
        "execution_id": "00000000-0000-4000-8000-000000000000",
        "position": "0",
    }
    found = [(op, op.url(values)) for op in operations(app) if op.has_body]
    assert {str(op) for op, _ in found} >= {
        "POST /api/v1/tasks",
        "PUT /api/v1/tasks/{task_id}",
        "PATCH /api/v1/tasks/{task_id}",
        "POST /api/v1/tasks/preview",
        "POST /auth/api-keys",
        "PUT /api/v1/webhooks/config",
        "POST /api/v1/webhooks/test",
    }
    return found


def refused(response: httpx.Response, operation: Operation, status: int) -> None:
    assert response.status_code == status, (str(operation), response.status_code, response.text)
    assert status in operation.documented, f"{operation} does not document {status}"


async def test_oversized_bodies_are_refused_before_they_are_read(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    routes = await body_routes(app, client, alice)
    before = await snapshot(app, client, alice)
    big = json.dumps({"search_query": "q", "name": "x" * LIMIT}).encode()
    for operation, url in routes:
        declared = await client.request(
            operation.method,
            url,
            content=big,
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        refused(declared, operation, 413)
        assert isinstance(declared.json()["detail"], str)

        stream = Stream(b'{"search_query": "q", "name": "', total=50 * LIMIT, filler=b"x")
        chunked = await client.request(
            operation.method,
            url,
            content=stream,
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        refused(chunked, operation, 413)
        assert stream.sent <= LIMIT + CHUNK, f"{operation} read {stream.sent} bytes before refusing"
    assert await snapshot(app, client, alice) == before


async def test_deeply_nested_json_is_refused_before_it_is_parsed(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    routes = await body_routes(app, client, alice)
    before = await snapshot(app, client, alice)
    too_deep = deep_body(MAX_JSON_DEPTH + 1)
    assert len(too_deep) < LIMIT
    for operation, url in routes:
        response = await client.request(
            operation.method,
            url,
            content=too_deep,
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        refused(response, operation, 422)
        assert [e["type"] for e in response.json()["detail"]] == ["json_too_deep"]

        # Streamed: refused at the chunk that goes too deep, the rest is never read.
        stream = Stream(b"[" * (MAX_JSON_DEPTH + 1), total=3 * LIMIT // 4)
        chunked = await client.request(
            operation.method,
            url,
            content=stream,
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        refused(chunked, operation, 422)
        assert chunked.json()["detail"][0]["type"] == "json_too_deep"
        assert stream.sent <= CHUNK, f"{operation} read {stream.sent} bytes of a too-deep body"
    assert await snapshot(app, client, alice) == before


async def test_nesting_up_to_the_limit_and_brackets_in_strings_are_accepted(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    at_limit = json.loads(deep_body(MAX_JSON_DEPTH))
    created = await client.post("/api/v1/tasks", json=at_limit, headers=alice.headers)
    assert created.status_code == 200, created.text
    assert created.json()["context"] == at_limit["context"]
    brackets = {"search_query": "[[[[{{{{" * 20, "context": {"note": "[" * 200 + '\\"{'}}
    created = await client.post("/api/v1/tasks", json=brackets, headers=alice.headers)
    assert created.status_code == 200, created.text
    assert created.json()["context"] == brackets["context"]


async def test_every_route_documents_the_refusals_it_can_answer(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    """The size limit applies to every route (by Content-Length, before routing), and JSON that
    is not UTF-8 is a validation error: each answer must be one its operation documents."""
    values = {
        "task_id": "00000000-0000-4000-8000-000000000000",
        "key_id": "0",
        "user_id": "0",
        "execution_id": "0",
        "position": "0",
    }
    undocumented = []
    for operation in operations(app):
        url = operation.url(values)
        headers = {**alice.headers, "Content-Type": "application/json"}
        big = await client.request(
            operation.method, url, content=b" " * (LIMIT + 1), headers=headers
        )
        if big.status_code not in operation.documented:
            undocumented.append((str(operation), "oversized body", big.status_code))
        if operation.has_body:
            garbled = await client.request(
                operation.method, url, content=b'{"name": "\xff\xfe"}', headers=headers
            )
            if garbled.status_code not in operation.documented:
                undocumented.append((str(operation), "JSON that is not UTF-8", garbled.status_code))
    assert undocumented == [], "\n".join(map(str, undocumented))
