"""Drill: the model endpoint answers garbage, nothing, or far too much.

tests/engine/test_failures.py covers tool calls whose arguments do not validate (broken JSON,
missing fields, out of range, an over-long answer, a large state). This adds what a misbehaving
OpenAI-compatible server (a local Ollama, a proxy, a provider having a bad day) also sends: an
empty reply, prose instead of the tool call, an empty or null tool call, a call to a tool that
does not exist, HTTP 200 with an empty, non-JSON, deeply nested or 30 MB body, an empty
`choices` list, a reply cut off at the length limit, and replies of several megabytes.

The README: failures that are not transient "end the run `failed` with a message that says what
to fix"; preview answers 502 when a provider fails. So for each: the run fails within seconds,
with a short message naming the model and no internal error; the model is asked at most twice
(once more with the validation error); preview answers 502, never 500; and a good answer after
a bad one still makes a run succeed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fakes import Error, FakeOpenAI, FakeSearxng, FakeWeb, Reply, Text, ToolCall, sequence
from tests.fixtures.engine import (  # noqa: F401 - the engine's fakes and settings, as fixtures
    MET,
    _fresh_fakes,
    extra_settings,
    fake_model,
    fake_search,
    fake_web,
    new_task,
    page,
    run_now,
    settings_overrides,
)
from tests.fixtures.users import ApiUser

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),  # plays no part
]

MB = 1024 * 1024


def completion(choices: Any) -> Error:
    """An HTTP 200 chat completion with these `choices` (Error sends any body with any status)."""
    return Error(
        200,
        body={
            "id": "chatcmpl-drill",
            "object": "chat.completion",
            "created": 0,
            "model": "fake-model",
            "choices": choices,
        },
    )


def choice(message: dict[str, Any], finish_reason: str = "stop") -> list[dict[str, Any]]:
    return [{"index": 0, "finish_reason": finish_reason, "message": message}]


def tool_calls(arguments: str | None) -> dict[str, Any]:
    function = {"name": "final_result", "arguments": arguments}
    call = {"id": "c1", "type": "function", "function": function}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


BAD_REPLIES = [
    pytest.param(Text(""), id="empty-text"),
    pytest.param(Text("Yes, Apple has announced it."), id="prose-instead-of-the-tool"),
    pytest.param(ToolCall(""), id="empty-tool-call"),
    pytest.param(ToolCall({}), id="empty-object"),
    pytest.param(ToolCall("null"), id="null-arguments"),
    pytest.param(ToolCall(MET, name="no_such_tool"), id="unknown-tool"),
    pytest.param(Error(200, body=""), id="http-200-empty-body"),
    pytest.param(Error(200, body="<html>502 Bad Gateway</html>"), id="http-200-html"),
    pytest.param(Error(200, body={"unexpected": True}), id="http-200-wrong-shape"),
    pytest.param(completion([]), id="http-200-no-choices"),
    pytest.param(completion(None), id="http-200-null-choices"),
    pytest.param(completion(choice({"role": "assistant", "content": None})), id="no-content"),
    pytest.param(
        completion(choice({"role": "assistant", "content": None, "tool_calls": []})),
        id="empty-tool-calls",
    ),
    pytest.param(
        completion(choice(tool_calls('{"answer": "Apple will rel'), "length")),
        id="cut-off-at-the-length-limit",
    ),
    pytest.param(completion(choice(tool_calls(None), "length")), id="null-tool-arguments"),
    pytest.param(Error(200, body="[" * 100_000 + "]" * 100_000), id="deeply-nested-body"),
    pytest.param(Error(200, body="x" * (30 * MB)), id="30MB-of-garbage"),
    pytest.param(ToolCall({**MET, "answer": "x" * (5 * MB)}), id="5MB-answer"),
    pytest.param(Text("blah " * MB), id="5MB-of-prose"),
]


@pytest.fixture
def found_page(fake_web: FakeWeb, fake_search: FakeSearxng) -> str:
    fake_web.set_page("/news", page("Apple announced a date."))
    url = fake_web.url + "/news"
    fake_search.set_results(None, [(url, "News", "a snippet")])
    return url


@pytest.fixture
async def raw_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ASGI as a server runs it: an unhandled error becomes a 500 response."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://torale.test") as c:
        yield c


@pytest.mark.parametrize("reply", BAD_REPLIES)
async def test_a_bad_model_reply_fails_the_run_cleanly(
    client: httpx.AsyncClient,
    raw_client: httpx.AsyncClient,
    alice: ApiUser,
    fake_model: FakeOpenAI,
    found_page: str,
    reply: Reply,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="torale")
    fake_model.script = sequence(reply)
    task = await new_task(client, alice)

    started = time.monotonic()
    execution = await run_now(client, alice, task["id"])
    elapsed = time.monotonic() - started
    problems = []
    message = execution["error_message"] or ""
    if execution["status"] != "failed" or execution["result"] is not None:
        problems.append(f"run ended {execution['status']} with {execution['result']!r}"[:300])
    if "fake-model" not in message or "internal error" in message or len(message) > 300:
        problems.append(f"run's message: {message[:300]!r}")
    if fake_model.calls > 2:
        problems.append(f"the model was asked {fake_model.calls} times")
    if elapsed > 10:
        problems.append(f"the run took {elapsed:.1f} s")

    preview = await raw_client.post(
        "/api/v1/tasks/preview", json={"search_query": "q"}, headers=alice.headers
    )
    if preview.status_code != 502 or "fake-model" not in preview.json().get("detail", ""):
        problems.append(f"preview answered {preview.status_code} {preview.text[:200]}")
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("torale")
    ]
    if logged:
        problems.append(f"logged as errors: {logged}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Text(""), id="empty-text"),
        pytest.param(ToolCall(""), id="empty-tool-call"),
        pytest.param(ToolCall({}), id="empty-object"),
        pytest.param(Text("blah " * MB), id="5MB-of-prose"),
    ],
)
async def test_a_good_reply_after_a_bad_one_makes_the_run_succeed(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, found_page: str, reply: Reply
) -> None:
    fake_model.script = sequence(reply, MET)
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success", execution["error_message"]
    assert execution["result"]["answer"] == MET["answer"]
    assert execution["usage"]["llm_calls"] == 2
    assert fake_model.calls == 2
