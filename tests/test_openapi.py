"""The OpenAPI document's examples (src/torale/openapi.py): none missing, each one valid.

Every operation has a request example when it takes a JSON body, an example of its success
answer, and one for every error status it declares (except router-wide statuses the table marks
as never answered by that route). Every example matches its schema, with no field the schema does
not name. Request examples are accepted by the API itself, and a few error examples are compared
with what the API really answers.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import FastAPI

from tests.fixtures.users import ApiUser
from torale import openapi as examples
from torale.app import create_app
from torale.auth.keys import looks_like_api_key
from torale.config import Settings
from torale.engine.evaluate import NO_MODEL_FOR_MODE
from torale.notify.sending import SendResult

METHODS = {"get", "put", "post", "patch", "delete"}
ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    settings = Settings(_env_file=None, data_dir=data_dir, secret_key="openapi-" + "x" * 32)
    return create_app(settings, scheduler=False).openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, items in document["paths"].items()
        for method, operation in items.items()
        if method in METHODS
    ]


def problems(document: dict[str, Any]) -> list[str]:
    """What is missing or stale in the document's examples and the table behind them."""
    found = []
    seen = set()
    for method, path, operation in operations(document):
        where = f"{method} {path}"
        seen.add((method, path))
        documented = examples.OPERATIONS.get((method, path))
        if documented is None:
            found.append(f"{where}: not in torale.openapi.OPERATIONS (add its examples)")
            continue
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None and not body.get("examples"):
            found.append(f"{where}: no request example")
        declared = {int(code) for code in operation["responses"]}
        for code, response in operation["responses"].items():
            status = int(code)
            content = response.get("content", {})
            if status in documented.not_answered or not content:
                continue
            for media, value in content.items():
                if not value.get("examples"):
                    found.append(f"{where}: no example for {status} ({media})")
        for status in documented.not_answered - declared:
            found.append(f"{where}: not_answered names {status}, which it does not declare")
        for status in set(documented.errors) - declared:
            found.append(f"{where}: an example for {status}, which it does not declare")
    for method, path in set(examples.OPERATIONS) - seen:
        found.append(f"{method} {path}: examples for an operation that does not exist")
    return found


def test_every_operation_has_its_examples(document: dict[str, Any]) -> None:
    assert problems(document) == []


def test_a_missing_example_is_found(document: dict[str, Any]) -> None:
    """The check above is not vacuous: a new operation, or a response without examples, fails it."""
    drifted = copy.deepcopy(document)
    drifted["paths"]["/api/v1/tasks/{task_id}/archive"] = {
        "post": {"responses": {"200": {"content": {"application/json": {"schema": {}}}}}}
    }
    del drifted["paths"]["/api/v1/tasks"]["post"]["responses"]["404"]
    del drifted["paths"]["/api/v1/tasks"]["post"]["responses"]["409"]["content"][
        "application/json"
    ]["examples"]
    del drifted["paths"]["/auth/api-keys"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    assert sorted(problems(drifted)) == [
        "POST /api/v1/tasks/{task_id}/archive: not in torale.openapi.OPERATIONS (add its examples)",
        "POST /api/v1/tasks: no example for 409 (application/json)",
        "POST /api/v1/tasks: not_answered names 404, which it does not declare",
        "POST /auth/api-keys: no request example",
    ]


def _strict(node: Any) -> Any:
    """A copy of a schema where objects with named properties take no other ones, so that an
    example with a misspelt or invented field fails."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    strict = {key: _strict(value) for key, value in node.items()}
    if "properties" in strict and "additionalProperties" not in strict:
        strict["additionalProperties"] = False
    return strict


def all_examples(document: dict[str, Any]) -> list[tuple[str, dict[str, Any], Any]]:
    """(where, schema, value) for every example in the document."""
    found = []
    for method, path, operation in operations(document):
        parts = [("request", operation.get("requestBody", {}).get("content", {}))]
        parts += [(code, r.get("content", {})) for code, r in operation["responses"].items()]
        for part, content in parts:
            for media, value in content.items():
                for name, item in value.get("examples", {}).items():
                    where = f"{method} {path} {part} {media} {name}"
                    found.append((where, value.get("schema"), item["value"]))
    return found


def test_every_example_matches_its_schema(document: dict[str, Any]) -> None:
    components = _strict(document["components"])
    checked = 0
    failures = []
    for where, schema, value in all_examples(document):
        if schema is None:  # /metrics: Prometheus text
            assert isinstance(value, str), where
            assert value.startswith("# HELP"), where
            continue
        validator = jsonschema_rs.Draft202012Validator(
            {**_strict(schema), "components": components}, validate_formats=True
        )
        failures += [f"{where}: {error.message}" for error in validator.iter_errors(value)]
        checked += 1
    assert failures == []
    assert checked > 150  # every operation, several statuses each


def test_the_schema_check_catches_a_bad_example(document: dict[str, Any]) -> None:
    components = _strict(document["components"])
    task = {"$ref": "#/components/schemas/TaskRead", "components": components}
    validator = jsonschema_rs.Draft202012Validator(task, validate_formats=True)
    assert validator.is_valid(examples.TASK)
    assert not validator.is_valid(examples.TASK | {"stat": "active"})  # an unknown field
    assert not validator.is_valid(examples.TASK | {"id": "42"})  # not a UUID
    assert not validator.is_valid({k: v for k, v in examples.TASK.items() if k != "state"})


def test_error_examples_are_in_the_documented_shapes(document: dict[str, Any]) -> None:
    for where, _schema, value in all_examples(document):
        status = where.split()[2]
        if status == "422":
            assert set(value) == {"detail"}, where
            assert value["detail"], where
            for item in value["detail"]:
                assert set(item) == {"loc", "msg", "type"}, where
        elif status.startswith(("4", "5")) and "/health" not in where:
            assert set(value) == {"detail"}, where
            assert isinstance(value["detail"], str), where


def test_the_api_key_example_has_the_documented_format() -> None:
    created = examples.OPERATIONS[("POST", "/auth/api-keys")].success
    assert created is not None
    value = created["ok"]["value"]
    assert re.fullmatch(r"sk_[A-Za-z0-9_-]{43}", value["key"])
    assert looks_like_api_key(value["key"])
    assert value["key_info"]["key_prefix"] == value["key"][:12]


async def test_the_served_document_carries_the_examples(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    assert app.openapi() is app.openapi()  # built once
    served = (await client.get("/openapi.json")).json()
    assert served == app.openapi()
    task = served["paths"]["/api/v1/tasks/{task_id}"]["get"]["responses"]["200"]
    assert task["content"]["application/json"]["examples"]["ok"]["value"] == examples.TASK


# --- request examples, sent to the API ----------------------------------------------------------


def request_examples(method: str, path: str) -> list[Any]:
    documented = examples.OPERATIONS[(method, path)]
    assert documented.request, f"{method} {path} has no request examples"
    return [item["value"] for item in documented.request.values()]


async def test_task_examples_are_accepted(client: httpx.AsyncClient, alice: ApiUser) -> None:
    created = []
    for body in request_examples("POST", "/api/v1/tasks"):
        response = await client.post("/api/v1/tasks", json=body, headers=alice.headers)
        assert response.status_code == 200, response.text
        created.append(response.json())
    full = created[0]
    # The example answer names exactly the fields the API sends.
    assert set(full) == set(examples.NEW_TASK)
    assert full["notifications"] == examples.NEW_TASK["notifications"]  # header value masked
    for method in ("PATCH", "PUT"):
        for body in request_examples(method, "/api/v1/tasks/{task_id}"):
            url = f"/api/v1/tasks/{full['id']}"
            response = await client.request(method, url, json=body, headers=alice.headers)
            assert response.status_code == 200, response.text
            assert set(response.json()) == set(examples.TASK)
            if response.json()["state"] == "paused":  # the next example runs on a live task
                resume = {"state": "active"}
                await client.patch(url, json=resume, headers=alice.headers)


@pytest.mark.parametrize("settings_overrides", [{"model": None}])
async def test_preview_examples_are_accepted(client: httpx.AsyncClient, alice: ApiUser) -> None:
    """This test runs without a model: a model preview whose body passes every check of its
    fields is refused at `mode` with the no-model message, and one of an existing task (the
    example's id is nobody's) with 404 after its body was checked (nothing is searched or
    fetched either way)."""
    for body in request_examples("POST", "/api/v1/tasks/preview"):
        response = await client.post("/api/v1/tasks/preview", json=body, headers=alice.headers)
        if "task_id" in body:
            assert response.status_code == 404, response.text
            continue
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "mode"]
        assert error["msg"] == NO_MODEL_FOR_MODE


@pytest.mark.parametrize("settings_overrides", [{"model": None}])
async def test_suggest_examples_are_accepted(client: httpx.AsyncClient, alice: ApiUser) -> None:
    """Without a model (none is asked here): each example prompt passes validation and is
    answered with the documented 503."""
    path = "/api/v1/tasks/suggest"
    for body in request_examples("POST", path):
        response = await client.post(path, json=body, headers=alice.headers)
        assert response.status_code == 503, response.text
        assert response.json() == error_example("POST", path, 503, "no_model")
    empty = await client.post(path, json={"prompt": ""}, headers=alice.headers)
    assert empty.json() == error_example("POST", path, 422, "empty_prompt")


async def test_webhook_examples_are_accepted(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    for body in request_examples("PUT", "/api/v1/webhooks/config"):
        response = await client.put("/api/v1/webhooks/config", json=body, headers=alice.headers)
        assert response.status_code == 200, response.text
        assert set(response.json()) == set(examples.WEBHOOK_CONFIG)
    sent = []

    async def post(url: str, *_args: Any, **_kwargs: Any) -> SendResult:
        sent.append(url)  # tests reach only loopback: the receiver is not called
        return SendResult(True, status_code=200)

    monkeypatch.setattr(app.state.torale.dispatcher.webhooks, "post", post)
    for body in request_examples("POST", "/api/v1/webhooks/test"):
        response = await client.post("/api/v1/webhooks/test", json=body, headers=alice.headers)
        assert response.status_code == 200, response.text
        assert set(response.json()) == set(
            examples.OPERATIONS[("POST", "/api/v1/webhooks/test")].success["ok"]["value"]  # type: ignore[index]
        )
    assert sent == [examples.HOOK_URL, examples.HOOK_URL]


async def test_api_key_example_is_accepted(client: httpx.AsyncClient, alice: ApiUser) -> None:
    for body in request_examples("POST", "/auth/api-keys"):
        response = await client.post("/auth/api-keys", json=body, headers=alice.headers)
        assert response.status_code == 200, response.text
        created = response.json()
        assert set(created) == {"key", "key_info"}
        assert set(created["key_info"]) == set(examples.KEY_INFO)
        assert re.fullmatch(r"sk_[A-Za-z0-9_-]{43}", created["key"])


# --- error examples, against what the API answers ------------------------------------------------


def error_example(method: str, path: str, status: int, name: str) -> Any:
    found = examples.examples_for(examples.OPERATIONS[(method, path)], status)
    assert found is not None
    return found[name]["value"]


async def test_error_examples_are_what_the_api_answers(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    task = (
        await client.post(
            "/api/v1/tasks", json={"search_query": "next iPhone"}, headers=alice.headers
        )
    ).json()
    url = f"/api/v1/tasks/{task['id']}"
    await client.patch(url, json={"state": "completed"}, headers=alice.headers)
    h = alice.headers
    tasks, task, keys = "/api/v1/tasks", "/api/v1/tasks/{task_id}", "/auth/api-keys"
    config = "/api/v1/webhooks/config"
    cases: list[tuple[str, str, Any, dict[str, str], str, int, str]] = [
        ("GET", f"{tasks}/{ID}", None, h, task, 404, "not_found"),
        ("GET", f"{tasks}/not-a-uuid", None, h, task, 422, "bad_id"),
        ("GET", f"{tasks}?limit=500", None, h, tasks, 422, "bad_limit"),
        ("PATCH", url, {"state": "paused"}, h, task, 409, "bad_transition"),
        ("POST", tasks, {"search_query": "q", "schedule": "daily"}, h, tasks, 422, "bad_schedule"),
        (
            "POST",
            tasks,
            {"search_query": "q", "timezone": "Mars/Base"},
            h,
            tasks,
            422,
            "bad_timezone",
        ),
        (
            "GET",
            "/auth/me",
            None,
            {"Authorization": "Bearer sk_" + "a" * 43},
            "/auth/me",
            401,
            "invalid_key",
        ),
        ("GET", "/auth/me", None, {}, "/auth/me", 401, "no_credentials"),
        ("GET", "/admin/stats", None, h, "/admin/stats", 403, "not_admin"),
        ("POST", keys, {"name": ""}, h, keys, 422, "empty_name"),
        ("DELETE", f"{keys}/{ID}", None, h, keys + "/{key_id}", 404, "not_found"),
        ("PUT", config, {"url": "http://hooks.example.com/"}, h, config, 422, "plain_http"),
        ("POST", "/api/v1/webhooks/test", {}, h, "/api/v1/webhooks/test", 422, "no_url"),
    ]
    for method, sent_url, body, headers, template, status, name in cases:
        response = await client.request(method, sent_url, json=body, headers=headers)
        assert response.status_code == status, (method, sent_url, response.text)
        assert response.json() == error_example(method, template, status, name)
