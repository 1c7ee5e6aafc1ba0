"""The shared input rules (torale/inputs.py): that every request schema uses them, the rules
themselves, and what a client sees at the HTTP edge on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError

from tests.fixtures.users import ApiUser
from torale import inputs
from torale.app import create_app
from torale.config import Settings
from torale.inputs import MAX_CONTEXT_BYTES, Context, Text, UtcDateTime, clean_text

_GUARDS = {inputs._check_text, inputs._check_context}
TASKS = "/api/v1/tasks"


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router
            yield from _api_routes(route.original_router.routes)


def _unguarded_strings(schema: Any) -> list[str]:
    """Paths in a pydantic core schema to string validators that the text rules do not wrap."""
    definitions: dict[str, Any] = {}
    found: list[str] = []
    seen: set[tuple[str, bool]] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "definitions":
                for definition in node["definitions"]:
                    definitions[definition["ref"]] = definition
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    def walk(node: Any, path: str, guarded: bool) -> None:
        if isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]", guarded)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if kind == "str" and not guarded:
            found.append(path)
        if kind and str(kind).startswith("function-"):
            function = node.get("function", {}).get("function")
            guarded = guarded or function in _GUARDS
        if kind == "definition-ref":
            ref = node["schema_ref"]
            if (ref, guarded) not in seen:
                seen.add((ref, guarded))
                walk(definitions[ref], f"{path}->{ref.split(':')[0]}", guarded)
            return
        for key, value in node.items():
            if key not in ("definitions", "metadata", "serialization", "function"):
                walk(value, f"{path}.{key}", guarded)

    collect(schema)
    walk(schema, "", False)
    return found


@pytest.fixture(scope="module")
def bare_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    data = tmp_path_factory.mktemp("inputs")
    return create_app(Settings(_env_file=None, data_dir=Path(data), secret_key="k"))


def test_every_text_input_of_every_route_follows_the_text_rules(bare_app: FastAPI) -> None:
    checked, problems = 0, []
    for route in _api_routes(bare_app.routes):
        params = route.dependant.body_params + route.dependant.query_params
        for param in params:
            annotation = param.field_info.annotation
            assert annotation is not None
            # FastAPI keeps `Annotated` metadata (the TEXT validator) apart from the type.
            metadata = tuple(param.field_info.metadata)
            full: Any = Annotated[(annotation, *metadata)] if metadata else annotation
            schema = TypeAdapter(full).core_schema
            checked += 1
            for path in _unguarded_strings(schema):
                problems.append(f"{sorted(route.methods or ())} {route.path} {param.name}{path}")
    assert checked >= 10, "no request schemas found: the route walk is broken"
    assert not problems, "strings without the text rules (use inputs.TEXT):\n" + "\n".join(problems)


def test_the_walk_finds_a_plain_string() -> None:
    from pydantic import BaseModel

    class Plain(BaseModel):
        ok: Text
        bad: dict[Text, str]

    [path] = _unguarded_strings(Plain.__pydantic_core_schema__)
    assert path.endswith(".fields.bad.schema.values_schema")


@pytest.mark.parametrize("value", ["a\x00b", "\x00", "x\udfff", "\ud800"])
def test_text_refuses_nul_and_lone_surrogates(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(Text).validate_python(value)
    assert caught.value.errors()[0]["type"] == "text_invalid"


def test_text_accepts_any_other_unicode() -> None:
    value = "tab\tline\nemoji \U0001f600 é ß \u200b"
    assert TypeAdapter(Text).validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    [
        {"a": float("nan")},
        [1, float("inf")],
        float("-inf"),
        {"k\x00": 1},
        {"k": ["\x00"]},
        {"\udfff": 1},
        [[["\udfff"]]],
    ],
)
def test_context_refuses_what_json_or_text_cannot_hold(value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(Context).validate_python(value)
    assert caught.value.errors()[0]["type"] == "context_invalid"


def test_context_is_capped_when_serialized() -> None:
    adapter = TypeAdapter(Context)
    overhead = len('{"k":""}')
    fits = {"k": "x" * (MAX_CONTEXT_BYTES - overhead)}
    assert adapter.validate_python(fits) == fits
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python({"k": "x" * (MAX_CONTEXT_BYTES - overhead + 1)})
    assert caught.value.errors()[0]["type"] == "context_too_large"
    # Bytes, not characters: é is two.
    with pytest.raises(ValidationError):
        adapter.validate_python({"k": "é" * (MAX_CONTEXT_BYTES // 2)})


def test_times_without_a_zone_are_utc() -> None:
    adapter = TypeAdapter(UtcDateTime)
    assert adapter.validate_python("2026-01-01") == datetime(2026, 1, 1, tzinfo=UTC)
    assert adapter.validate_python(date(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert adapter.validate_python("2026-01-01T10:00") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert adapter.validate_python("2026-01-01T10:00+02:00") == datetime(2026, 1, 1, 8, tzinfo=UTC)


def test_clean_text() -> None:
    assert clean_text("a\x00b\x00") == "ab"
    assert clean_text("x\udfffy") == "x\ufffdy"
    assert clean_text("plain é \U0001f600") == "plain é \U0001f600"


# --- at the HTTP edge ----------------------------------------------------------------

_FULL_TASK: dict[str, Any] = {
    "name": "n",
    "search_query": "q",
    "condition_description": "c",
    "urls": ["https://example.com/"],
    "schedule": "0 9 * * *",
    "timezone": "UTC",
    "config": {"model": "openai:gpt-4o-mini"},
    "notifications": [
        {"type": "webhook", "url": "https://example.com/hook", "headers": {"X-Key": "v"}},
        {"type": "email", "address": "me@example.com"},
        {"type": "apprise", "url": "jsons://example.com/"},
    ],
    "context": {"key": ["value"]},
}
_TASK_TEXT: list[tuple[list[Any], list[Any]]] = [
    # (where the bad text goes in the body, the loc expected to start with)
    (["name"], ["body", "name"]),
    (["search_query"], ["body", "search_query"]),
    (["condition_description"], ["body", "condition_description"]),
    (["urls", 0], ["body", "urls", 0]),
    (["schedule"], ["body", "schedule"]),
    (["timezone"], ["body", "timezone"]),
    (["config", "model"], ["body", "config", "model"]),
    (["notifications", 0, "url"], ["body", "notifications", 0, "webhook", "url"]),
    (["notifications", 0, "headers", "X-Key"], ["body", "notifications", 0, "webhook"]),
    (["notifications", 1, "address"], ["body", "notifications", 1, "email", "address"]),
    (["notifications", 2, "url"], ["body", "notifications", 2, "apprise", "url"]),
    (["context", "key", 0], ["body", "context"]),
]
_BAD_TEXT = {"nul": "\\u0000", "surrogate": "\\udfff"}


def _with_bad_text(body: dict[str, Any], where: list[Any], escape: str) -> bytes:
    """`body` as JSON with the string at `where` spoiled by a raw JSON escape."""
    body = copy.deepcopy(body)
    target: Any = body
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = f"{target[where[-1]]}@@BAD@@"
    return json.dumps(body).replace("@@BAD@@", escape).encode()


async def _send(
    client: httpx.AsyncClient, user: ApiUser, method: str, url: str, content: bytes
) -> httpx.Response:
    headers = {**user.headers, "Content-Type": "application/json"}
    return await client.request(method, url, content=content, headers=headers)


def _assert_422_at(response: httpx.Response, loc: list[Any]) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(item["loc"][: len(loc)] == loc for item in detail), detail
    assert all(set(item) == {"loc", "msg", "type"} for item in detail)


@pytest.mark.parametrize("settings_overrides", [{"allowed_models": "*"}])
async def test_the_full_body_is_valid(client: httpx.AsyncClient, alice: ApiUser) -> None:
    response = await _send(client, alice, "POST", TASKS, json.dumps(_FULL_TASK).encode())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("bad", sorted(_BAD_TEXT))
@pytest.mark.parametrize(("where", "loc"), _TASK_TEXT, ids=lambda v: ".".join(map(str, v)))
async def test_text_that_cannot_be_stored_is_a_422_at_its_field(
    client: httpx.AsyncClient, alice: ApiUser, where: list[Any], loc: list[Any], bad: str
) -> None:
    content = _with_bad_text(_FULL_TASK, where, _BAD_TEXT[bad])
    _assert_422_at(await _send(client, alice, "POST", TASKS, content), loc)
    task = (await client.post(TASKS, json={"search_query": "q"}, headers=alice.headers)).json()
    update = {where[0]: _FULL_TASK[where[0]]}
    content = _with_bad_text(update, where, _BAD_TEXT[bad])
    _assert_422_at(await _send(client, alice, "PATCH", f"{TASKS}/{task['id']}", content), loc)
    # Nothing was saved, and the owner's list still reads.
    listing = await client.get(TASKS, headers=alice.headers)
    assert listing.status_code == 200
    assert [t["id"] for t in listing.json()["items"]] == [task["id"]]


@pytest.mark.parametrize("bad", sorted(_BAD_TEXT))
@pytest.mark.parametrize(
    ("method", "url", "body", "where"),
    [
        ("POST", "/api/v1/tasks/preview", {"search_query": "q"}, ["search_query"]),
        (
            "POST",
            "/api/v1/tasks/preview",
            {"search_query": "q", "condition_description": "c"},
            ["condition_description"],
        ),
        ("POST", "/api/v1/tasks/preview", {"search_query": "q", "urls": ["https://a.io"]}, None),
        ("POST", "/auth/api-keys", {"name": "laptop"}, ["name"]),
        ("PUT", "/api/v1/webhooks/config", {"url": "https://example.com/h"}, ["url"]),
        ("POST", "/api/v1/webhooks/test", {"url": "https://example.com/h"}, ["url"]),
    ],
)
async def test_other_bodies_follow_the_same_text_rules(
    client: httpx.AsyncClient,
    alice: ApiUser,
    method: str,
    url: str,
    body: dict[str, Any],
    where: list[Any] | None,
    bad: str,
) -> None:
    where = where or ["urls", 0]
    content = _with_bad_text(body, where, _BAD_TEXT[bad])
    _assert_422_at(await _send(client, alice, method, url, content), ["body", *where])


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
async def test_numbers_json_cannot_hold_are_refused_in_context(
    client: httpx.AsyncClient, alice: ApiUser, number: str
) -> None:
    content = f'{{"search_query": "q", "context": {{"a": [1, {number}]}}}}'.encode()
    response = await _send(client, alice, "POST", TASKS, content)
    _assert_422_at(response, ["body", "context"])
    assert "NaN and Infinity" in response.json()["detail"][0]["msg"]
    task = (await client.post(TASKS, json={"search_query": "q"}, headers=alice.headers)).json()
    content = f'{{"context": {number}}}'.encode()
    response = await _send(client, alice, "PATCH", f"{TASKS}/{task['id']}", content)
    _assert_422_at(response, ["body", "context"])
    assert (await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)).json()[
        "context"
    ] is None


async def test_a_key_with_nul_in_context_is_refused(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    content = b'{"search_query": "q", "context": {"a\\u0000": 1}}'
    _assert_422_at(await _send(client, alice, "POST", TASKS, content), ["body", "context"])


async def test_context_is_capped_at_16_kb(client: httpx.AsyncClient, alice: ApiUser) -> None:
    just_fits = {"k": "x" * (MAX_CONTEXT_BYTES - len('{"k":""}'))}
    task = (
        await client.post(
            TASKS, json={"search_query": "q", "context": just_fits}, headers=alice.headers
        )
    ).json()
    assert task["context"] == just_fits
    too_big = {"k": "x" * MAX_CONTEXT_BYTES}
    for method, url, body in (
        ("POST", TASKS, {"search_query": "q", "context": too_big}),
        ("PATCH", f"{TASKS}/{task['id']}", {"context": too_big}),
    ):
        response = await client.request(method, url, json=body, headers=alice.headers)
        _assert_422_at(response, ["body", "context"])
        assert response.json()["detail"][0]["type"] == "context_too_large"
        assert "16384 bytes" in response.json()["detail"][0]["msg"]
