"""Input rules at the HTTP edge, on SQLite and PostgreSQL: text that cannot be stored, free JSON
that is not JSON or too big, time zones, cron syntax, URL and JSON messages, default names."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from tests.conftest import ApiUser
from torale.db.models import Task
from torale.inputs import MAX_CONTEXT_BYTES
from torale.tasks.service import default_name

TASKS = "/api/v1/tasks"

# Every text field a client can send, with a body that is valid apart from it.
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


@pytest.mark.parametrize("url", ["example.com", "www.example.com/page", "ftp://example.com/x"])
async def test_a_url_without_http_says_what_a_full_url_is(
    client: httpx.AsyncClient, alice: ApiUser, url: str
) -> None:
    response = await client.post(
        TASKS, json={"search_query": "q", "urls": [url]}, headers=alice.headers
    )
    _assert_422_at(response, ["body", "urls", 0])
    message = response.json()["detail"][0]["msg"]
    # Task pages may be plain http: the message must not say https only.
    assert message == (
        "URL must be a full address starting with http:// or https:// (e.g. https://example.com)"
    )
    webhook = {"type": "webhook", "url": url}
    response = await client.post(
        TASKS, json={"search_query": "q", "notifications": [webhook]}, headers=alice.headers
    )
    _assert_422_at(response, ["body", "notifications", 0, "url"])
    # Webhooks are https only on this server (TORALE_ALLOW_HTTP_WEBHOOKS is off).
    assert response.json()["detail"][0]["msg"] == (
        "URL must be a full address starting with https:// (e.g. https://example.com)"
    )


async def test_an_unnamed_task_is_named_after_its_query(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    async def name_of(**body: Any) -> str:
        response = await client.post(TASKS, json=body, headers=alice.headers)
        assert response.status_code == 200, response.text
        name: str = response.json()["name"]
        return name

    assert await name_of(search_query="  Is the\nRust 2.0   release out? ") == (
        "Is the Rust 2.0 release out?"
    )
    long_query = "When will " + "the next very long named product " * 5 + "ship"
    shortened = await name_of(search_query=long_query)
    assert len(shortened) <= 80
    assert shortened.endswith("…")
    assert long_query.startswith(shortened[:-1])  # cut at a word
    assert await name_of(search_query="q", name="Mine") == "Mine"
    # Only a name that is not sent is made up: an empty one is still refused.
    response = await client.post(
        TASKS, json={"search_query": "q", "name": " "}, headers=alice.headers
    )
    _assert_422_at(response, ["body", "name"])


def test_a_default_name_comes_from_the_first_url_without_a_query() -> None:
    assert default_name("", ["https://example.com/pricing/", "https://b.io"]) == (
        "example.com/pricing"
    )
    assert default_name("  ", []) == "New monitor"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL refused NULs
async def test_a_task_saved_before_the_rules_still_reads(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser
) -> None:
    """SQLite stored text the input rules now refuse; such a row must not break its owner's
    list (the answer shows it cleaned)."""
    task = (await client.post(TASKS, json={"search_query": "q"}, headers=alice.headers)).json()
    async with app.state.torale.sessions() as session:
        await session.execute(
            update(Task)
            .where(Task.id == uuid.UUID(task["id"]))
            .values(
                config={"model": "gpt\x00-4o"},
                notifications=[{"type": "apprise", "url": "jsons://exa\x00mple.com/"}],
            )
        )
        await session.commit()
    listing = await client.get(TASKS, headers=alice.headers)
    assert listing.status_code == 200, listing.text
    assert listing.json()["items"][0]["config"] == {"model": "gpt-4o"}
    single = await client.get(f"{TASKS}/{task['id']}", headers=alice.headers)
    assert single.status_code == 200
