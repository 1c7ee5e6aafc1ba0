"""The authorization matrix: every operation of the app's route table (so new routes are covered
without editing this file) by anonymous, owner, another user, admin, deactivated user,
deactivated admin. Complements tests/test_access.py.

* anonymous → 401 (the public /health and /metrics → 200);
* a deactivated user or admin, with their own resources → 403 everywhere;
* admin routes → 403 for users, 2xx for admins;
* user routes on the owner's own resources → 2xx;
* user routes on someone else's resources → 404 for another user *and for an admin*: an admin
  is an ordinary user under /api/v1 and /auth (sees and changes only their own); collections
  show the caller's own rows only;
* every answer is a status its operation documents, and nobody but the owner changes the
  owner's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fakes import FakeOpenAI, FakeWeb, WebhookReceiver, sequence
from tests.fixtures.engine import drafting
from tests.fixtures.users import ApiUser, create_test_user, set_user_active
from tests.hardening.routes import PUBLIC_PATHS, Operation, operations

VERDICT = {
    "answer": "Nothing yet.",
    "condition_met": False,
    "current_state": {},
    "reasoning": "The page says nothing.",
    "confidence": 0.5,
    "sources": [],
}
# What the owner of a resource gets; 200 unless listed. sync-user takes sign-in tokens only, and
# answers an API key (any caller's) with 403 by design.
OWN_STATUS = {
    "DELETE /api/v1/tasks/{task_id}": 204,
    "POST /auth/sync-user": 403,
    # This server has no browser: the owner's runs keep no screenshot, so the route answers its
    # documented 404 (tests/browser/test_runs.py fetches a real one, and checks another user's
    # request for it is a 404).
    "GET /api/v1/tasks/{task_id}/executions/{execution_id}/sources/{position}/screenshot": 404,
}
QUERIES = {"POST /api/v1/tasks/{task_id}/execute": {"wait": "true"}}


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    """Every route, as several users, twice: more than the default 100 requests a minute that
    a user's keys now share."""
    return {"rate_limits": "2000/minute"}


@dataclass
class World:
    """Users and resources; `values(user)` are path parameters aimed at `user`'s own things."""

    alice: ApiUser  # the owner
    bob: ApiUser  # another user
    admin: ApiUser
    dave: ApiUser  # the user admin routes act on
    bodies: dict[str, Any]
    new_values: Callable[[ApiUser], Awaitable[dict[str, str]]]


@pytest.fixture
async def world(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    bob: ApiUser,
    fake_web: FakeWeb,
    fake_model: FakeOpenAI,
    receiver: WebhookReceiver,
) -> World:
    fake_web.set_page(
        "/page", "<html><body><article><p>No date has been announced yet.</p></article></body>"
    )
    fake_model.script = drafting(sequence(VERDICT))
    page = fake_web.url + "/page"
    admin = await create_test_user(app, "root@example.com", role="admin")
    dave = await create_test_user(app, "dave@example.com")

    async def new_values(user: ApiUser) -> dict[str, str]:
        """A fresh task and spare key of `user` (destructive routes may use them up)."""
        task = await client.post(
            "/api/v1/tasks",
            json={"search_query": "q", "urls": [page], "config": {"search_provider": "none"}},
            headers=user.headers,
        )
        assert task.status_code == 200, task.text
        key = await client.post("/auth/api-keys", json={"name": "spare"}, headers=user.headers)
        assert key.status_code == 200, key.text
        for _ in range(2):  # two runs: a diff has something to compare
            run = await client.post(
                f"/api/v1/tasks/{task.json()['id']}/execute?wait=true", headers=user.headers
            )
            assert run.status_code == 200, run.text
        return {
            "execution_id": run.json()["id"],
            "task_id": task.json()["id"],
            "key_id": key.json()["key_info"]["id"],
            "user_id": str(dave.id),
            "position": "0",
        }

    bodies: dict[str, Any] = {
        "POST /api/v1/tasks": {"search_query": "q"},
        "PUT /api/v1/tasks/{task_id}": {"name": "renamed"},
        "PATCH /api/v1/tasks/{task_id}": {"name": "renamed"},
        "POST /api/v1/tasks/preview": {
            "search_query": "q",
            "urls": [page],
            "config": {"search_provider": "none"},
        },
        "POST /api/v1/tasks/suggest": {"prompt": "tell me when the next iPhone is announced"},
        "POST /auth/api-keys": {"name": "laptop"},
        "PUT /api/v1/webhooks/config": {"enabled": True},
        "POST /api/v1/webhooks/test": {"url": receiver.url_for("/test")},
    }
    return World(alice, bob, admin, dave, bodies, new_values)


async def call(
    client: httpx.AsyncClient,
    world: World,
    operation: Operation,
    values: dict[str, str],
    headers: dict[str, str],
) -> httpx.Response:
    kwargs: dict[str, Any] = {"headers": headers, "params": QUERIES.get(str(operation))}
    if operation.has_body:
        kwargs["json"] = world.bodies.get(str(operation), {})
    response = await client.request(operation.method, operation.url(values), **kwargs)
    assert response.status_code in operation.documented, (
        f"{operation} answered {response.status_code}, which it does not document: {response.text}"
    )
    return response


async def owner_view(client: httpx.AsyncClient, user: ApiUser, values: dict[str, str]) -> Any:
    """What `user` sees of their own data (to compare before and after others' requests)."""
    task_id = values["task_id"]
    views = []
    for url in (
        f"/api/v1/tasks/{task_id}",
        "/api/v1/tasks",
        f"/api/v1/tasks/{task_id}/executions",
        "/api/v1/webhooks/config",
        "/api/v1/webhooks/deliveries",
        "/auth/api-keys",
        "/auth/me",
    ):
        response = await client.get(url, headers=user.headers)
        assert response.status_code == 200, (url, response.text)
        views.append(response.json())
    return views


def test_the_matrix_covers_the_route_table(app: FastAPI) -> None:
    ops = operations(app)
    for operation in ops:
        assert operation.authenticated or operation.path in PUBLIC_PATHS, (
            f"{operation} takes no credentials and is not public"
        )
    assert any(op.admin for op in ops)
    assert any(op.parameters and not op.admin for op in ops)


async def test_anonymous_callers_get_401_and_public_routes_answer(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    values = await world.new_values(world.alice)
    for operation in operations(app):
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Token sk_x"}):
            response = await call(client, world, operation, values, headers)
            expected = 200 if operation.path in PUBLIC_PATHS else 401
            assert response.status_code == expected, (str(operation), headers, response.text)


@pytest.mark.parametrize("role", ["user", "admin"])
async def test_deactivated_accounts_get_403_everywhere(
    app: FastAPI, client: httpx.AsyncClient, world: World, role: str
) -> None:
    carol = await create_test_user(app, "carol@example.com", role=role)
    values = await world.new_values(carol)
    await set_user_active(app, carol.id, False)
    for operation in operations(app):
        if operation.path in PUBLIC_PATHS:
            continue
        response = await call(client, world, operation, values, carol.headers)
        assert response.status_code == 403, (str(operation), response.text)


async def test_admin_routes_are_for_admins_only(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    admin_ops = [op for op in operations(app) if op.admin]
    values = await world.new_values(world.alice)
    for operation in admin_ops:
        for user in (world.alice, world.bob):
            response = await call(client, world, operation, values, user.headers)
            assert response.status_code == 403, (str(operation), user.email, response.text)
        response = await call(client, world, operation, values, world.admin.headers)
        assert 200 <= response.status_code < 300, (str(operation), response.text)
    # What the admin routes act on really changed hands only for the admin.
    users = await client.get("/admin/users", headers=world.admin.headers)
    emails = {u["email"]: u for u in users.json()["items"]}
    assert {"alice@example.com", "bob@example.com", "dave@example.com"} <= set(emails)


async def test_owners_can_use_every_user_route(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    for operation in operations(app):
        if operation.admin or operation.path in PUBLIC_PATHS:
            continue
        for user in (world.alice, world.admin):  # an admin uses them as any user does
            values = await world.new_values(user)
            response = await call(client, world, operation, values, user.headers)
            expected = OWN_STATUS.get(str(operation), 200)
            assert response.status_code == expected, (str(operation), user.email, response.text)


@pytest.mark.parametrize("intruder", ["bob", "admin"])
async def test_someone_elses_resources_are_404_for_users_and_admins_alike(
    app: FastAPI, client: httpx.AsyncClient, world: World, intruder: str
) -> None:
    other: ApiUser = getattr(world, intruder)
    values = await world.new_values(world.alice)
    # Alice's task has run and notified her webhook, so there is something to leak.
    ran = await client.post(
        f"/api/v1/tasks/{values['task_id']}/execute?wait=true", headers=world.alice.headers
    )
    assert ran.status_code == 200, ran.text
    before = await owner_view(client, world.alice, values)

    checked = 0
    for operation in operations(app):
        if operation.admin or operation.path in PUBLIC_PATHS:
            continue
        response = await call(client, world, operation, values, other.headers)
        if operation.parameters:
            assert response.status_code == 404, (str(operation), intruder, response.text)
            assert response.json() == {"detail": response.json()["detail"]}
            checked += 1
        else:
            expected = OWN_STATUS.get(str(operation), 200)
            assert response.status_code == expected, (str(operation), intruder, response.text)
            assert values["task_id"] not in response.text, (str(operation), "shows alice's task")
            assert values["key_id"] not in response.text, (str(operation), "shows alice's key")
    assert checked >= 7

    # Collections filtered by another user's ids answer nothing of theirs.
    deliveries = await client.get(
        "/api/v1/webhooks/deliveries", params={"task_id": values["task_id"]}, headers=other.headers
    )
    assert deliveries.status_code == 200
    assert deliveries.json()["total"] == 0
    listing = await client.get("/api/v1/tasks", headers=other.headers)
    assert values["task_id"] not in [t["id"] for t in listing.json()["items"]]
    assert await owner_view(client, world.alice, values) == before


async def test_admins_see_everyone_only_through_admin_routes(
    client: httpx.AsyncClient, world: World
) -> None:
    values = await world.new_values(world.alice)
    queries = await client.get("/admin/queries", headers=world.admin.headers)
    assert values["task_id"] in [t["id"] for t in queries.json()["items"]]
    own = await client.get("/api/v1/tasks", headers=world.admin.headers)
    assert values["task_id"] not in [t["id"] for t in own.json()["items"]]
    one = await client.get(f"/api/v1/tasks/{values['task_id']}", headers=world.admin.headers)
    assert one.status_code == 404
    # An unknown id answers exactly like another user's: existence is never revealed.
    unknown = await client.get(f"/api/v1/tasks/{uuid.uuid4()}", headers=world.admin.headers)
    assert (unknown.status_code, unknown.json()) == (one.status_code, one.json())
