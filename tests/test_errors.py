"""The documented error shapes for every kind of failure, docs routes, and /health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.lifespan import lifespan
from tests.fixtures.users import ApiUser
from torale.app import create_app
from torale.config import Settings

TASKS = "/api/v1/tasks"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"search_query": "q",',
            "Invalid JSON at line 1, column 22: the body ends before the JSON value is complete",
        ),
        (
            b'{\n  "search_query": "q",\n  "name": "x",\n}',
            "Invalid JSON at line 4, column 1: a key in double quotes was expected "
            "(JSON has no trailing commas, comments or single quotes)",
        ),
        (
            b'{"search_query": "q"\n "name": "x"}',
            "Invalid JSON at line 2, column 2: a comma or a closing bracket was expected",
        ),
        (
            b"{'search_query': 'q'}",
            "Invalid JSON at line 1, column 2: a key in double quotes was expected "
            "(JSON has no trailing commas, comments or single quotes)",
        ),
        (
            b'{"search_query": q}',
            "Invalid JSON at line 1, column 18: a value was expected (a string, number, "
            "object, array, true, false or null)",
        ),
        (
            b'{"search_query": "q"} x',
            "Invalid JSON at line 1, column 23: there is more after the JSON value",
        ),
        (
            b'{"search_query": "a\tb"}',
            "Invalid JSON at line 1, column 20: a string contains a raw control character "
            "(write a line break as \\n and a tab as \\t)",
        ),
        (
            b'{"search_query": "a\\qb"}',
            "Invalid JSON at line 1, column 20: a string contains an unknown escape "
            "(write a backslash as \\\\)",
        ),
        (
            b'{"search_query": "q}',
            "Invalid JSON at line 1, column 18: a string is not closed with a double quote",
        ),
    ],
)
async def test_malformed_json_says_where_and_what(
    client: httpx.AsyncClient, alice: ApiUser, body: bytes, message: str
) -> None:
    response = await client.post(
        TASKS, content=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"] == [{"loc": ["body"], "msg": message, "type": "json_invalid"}]


@pytest.mark.parametrize(
    "body", [b'{"search_query": "\xff\xfe"}', '{"search_query": "é"}'.encode("utf-16")]
)
async def test_json_that_is_not_utf8(
    client: httpx.AsyncClient, alice: ApiUser, body: bytes
) -> None:
    """JSON is UTF-8 (RFC 8259): anything else is a 422 in the documented shape, not a 400."""
    response = await client.post(
        TASKS, content=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [
        {"loc": ["body"], "msg": "JSON must be encoded as UTF-8", "type": "json_invalid"}
    ]
    assert (await client.get(TASKS, headers=alice.headers)).json()["total"] == 0


async def test_body_that_is_not_an_object(client: httpx.AsyncClient, alice: ApiUser) -> None:
    response = await client.post(TASKS, json=["search_query"], headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


async def test_form_body_is_told_to_send_json(client: httpx.AsyncClient, alice: ApiUser) -> None:
    response = await client.post(TASKS, data={"search_query": "q"}, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == (
        "Request body must be JSON sent with Content-Type: application/json"
    )


async def test_wrong_types(client: httpx.AsyncClient, alice: ApiUser) -> None:
    response = await client.post(
        TASKS,
        json={"search_query": "q", "urls": [1, 2], "run_immediately": "sometimes"},
        headers=alice.headers,
    )
    assert response.status_code == 422
    locs = [e["loc"] for e in response.json()["detail"]]
    assert ["body", "urls", 0] in locs
    assert ["body", "run_immediately"] in locs


async def test_validation_errors_do_not_echo_input(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    secret = "super-secret-token-value"
    response = await client.post(
        TASKS,
        json={
            "search_query": "q",
            "notifications": [{"type": "webhook", "url": secret, "headers": {"A": "\n" + secret}}],
        },
        headers=alice.headers,
    )
    assert response.status_code == 422
    assert secret not in response.text


@pytest.mark.parametrize("settings_overrides", [{"max_body_bytes": 4096}])
async def test_oversized_body_by_content_length(client: httpx.AsyncClient, alice: ApiUser) -> None:
    response = await client.post(
        TASKS, json={"search_query": "q", "context": "x" * 5000}, headers=alice.headers
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large (limit 4096 bytes)"}
    assert (await client.get(TASKS, headers=alice.headers)).json()["total"] == 0


@pytest.mark.parametrize("settings_overrides", [{"max_body_bytes": 4096}])
async def test_oversized_chunked_body(client: httpx.AsyncClient, alice: ApiUser) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"search_query": "q", "context": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = await client.post(
        TASKS, content=chunks(), headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["detail"].startswith("Request body too large")
    assert (await client.get(TASKS, headers=alice.headers)).json()["total"] == 0


async def test_unknown_route_and_method(client: httpx.AsyncClient, alice: ApiUser) -> None:
    missing = await client.get("/api/v1/nothing-here", headers=alice.headers)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}
    wrong_method = await client.post("/health")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": "Method Not Allowed"}


async def test_unexpected_error_is_a_plain_500(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail that must not leak")

    async with lifespan(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert "internal detail" not in response.text


async def test_docs_routes(app: FastAPI, client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["info"]["title"] == "Torale API"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method} {path} has no summary"
            assert "responses" in operation
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]


async def test_health_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "scheduler": "disabled (API only)",  # these tests run the API without dispatching
    }


async def test_health_degraded_when_database_is_gone(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url="postgresql://postgres@127.0.0.1:1/none",
        secret_key="k",
    )
    app = create_app(settings)
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["database"] == "unavailable"
