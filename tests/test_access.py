"""Who may call what, for every route in the app's route table (new routes are covered too).

- no credentials → 401; a bad key → 401
- a deactivated user's key → 403
- user B on user A's resources → 404, and A's data is unchanged
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.users import ApiUser, set_user_active

PUBLIC_PATHS = {"/health", "/metrics"}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # One bad key per route from one address: more routes must not turn the 401s into the
    # failed-authentication throttle's 429 (tests/test_ratelimit.py tests that).
    return {"auth_failure_limits": "10000/minute"}


# Routes outside the OpenAPI document that take the API's credentials: the MCP endpoint.
NOT_IN_THE_DOCUMENT = [("POST", "/mcp")]


def authenticated_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every operation in the OpenAPI document; each must take the bearer credential or be
    listed as public. Routes hidden from the schema would escape this, so the only one (`/mcp`)
    is listed above."""
    routes = list(NOT_IN_THE_DOCUMENT)
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            if operation.get("security"):
                routes.append((method.upper(), path))
            else:
                assert path in PUBLIC_PATHS, f"{method.upper()} {path} takes no credentials"
    return routes


def fill(path: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"no test value for path parameter {{{name}}}: add one"
        return values[name]

    return re.sub(r"\{(\w+)\}", value, path)


BODIES: dict[str, Any] = {"POST": {"search_query": "q", "name": "n"}, "PUT": {}, "PATCH": {}}


def test_route_table_is_covered(app: FastAPI) -> None:
    routes = authenticated_routes(app)
    assert ("GET", "/api/v1/tasks") in routes
    assert ("POST", "/auth/sync-user") in routes
    assert len(routes) >= 10


async def test_every_route_needs_credentials(app: FastAPI, client: httpx.AsyncClient) -> None:
    any_id = str(uuid.uuid4())
    for method, path in authenticated_routes(app):
        url = fill(
            path,
            {
                "task_id": any_id,
                "key_id": any_id,
                "user_id": any_id,
                "execution_id": any_id,
                "position": "0",
            },
        )
        for headers in (
            {},
            {"Authorization": "Bearer sk_" + "x" * 43},
            {"Authorization": "Basic a"},
        ):
            response = await client.request(method, url, json=BODIES.get(method), headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert isinstance(response.json()["detail"], str)
            assert "x-ratelimit-limit" not in response.headers


async def test_deactivated_user_gets_403_everywhere(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = await client.post("/api/v1/tasks", json={"search_query": "q"}, headers=alice.headers)
    task_id = task.json()["id"]
    keys = (await client.get("/auth/api-keys", headers=alice.headers)).json()["items"]
    await set_user_active(app, alice.id, False)
    for method, path in authenticated_routes(app):
        values = {"task_id": task_id, "key_id": keys[0]["id"], "user_id": str(alice.id)}
        url = fill(path, {**values, "execution_id": str(uuid.uuid4()), "position": "0"})
        response = await client.request(method, url, json=BODIES.get(method), headers=alice.headers)
        assert response.status_code == 403, (method, path, response.text)
        assert isinstance(response.json()["detail"], str)
    await set_user_active(app, alice.id, True)
    # Nothing was changed while deactivated.
    after = await client.get(f"/api/v1/tasks/{task_id}", headers=alice.headers)
    assert after.json() == task.json()


async def test_other_users_resources_are_404_and_unchanged(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, bob: ApiUser
) -> None:
    created = await client.post(
        "/api/v1/tasks", json={"search_query": "alice's secret"}, headers=alice.headers
    )
    task_id = created.json()["id"]
    key_id = (await client.get("/auth/api-keys", headers=alice.headers)).json()["items"][0]["id"]

    async def snapshot() -> tuple[Any, ...]:
        return (
            (await client.get(f"/api/v1/tasks/{task_id}", headers=alice.headers)).json(),
            (await client.get("/api/v1/tasks", headers=alice.headers)).json(),
            (await client.get("/auth/api-keys", headers=alice.headers)).json()["items"][0][
                "is_active"
            ],
        )

    before = await snapshot()
    checked = 0
    for method, path in authenticated_routes(app):
        # Admin routes act on any user by design; tests/admin checks non-admins get 403.
        if "{" not in path or path.startswith("/admin/"):
            continue
        url = fill(
            path,
            {
                "task_id": task_id,
                "key_id": key_id,
                "execution_id": str(uuid.uuid4()),
                "position": "0",
            },
        )
        response = await client.request(
            method, url, json=BODIES.get(method) or {"name": "hijacked"}, headers=bob.headers
        )
        assert response.status_code == 404, (method, path, response.text)
        checked += 1
    assert checked >= 5
    assert await snapshot() == before

    # Lists never show another user's rows.
    bob_tasks = (await client.get("/api/v1/tasks", headers=bob.headers)).json()
    assert bob_tasks["total"] == 0
    bob_keys = (await client.get("/auth/api-keys", headers=bob.headers)).json()["items"]
    assert key_id not in [k["id"] for k in bob_keys]
