"""The fakes speak their protocols: each is exercised with the real client library."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import httpx
import pytest
import trafilatura
from openai import AsyncOpenAI
from pydantic import BaseModel
from pydantic_ai import Agent, NativeOutput, PromptedOutput
from pydantic_ai.exceptions import (
    ModelAuthenticationError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelServerError,
    UnexpectedModelBehavior,
)
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.fakes import (
    Delay,
    Error,
    FakeBrave,
    FakeOpenAI,
    FakeSearxng,
    FakeTavily,
    FakeWeb,
    LocalServer,
    Text,
    ToolCall,
    article_html,
    example_for_schema,
    sequence,
    tokens_for,
    verdict_rules,
)

# -- LocalServer -----------------------------------------------------------------------------


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"hello from {request.url.hostname}")


def _app() -> Starlette:
    return Starlette(routes=[Route("/", _hello)])


def _refuses(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


def test_local_server_stop_refuses_then_restart_on_same_port() -> None:
    server = LocalServer(_app())
    with server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(server.url).text == "hello from 127.0.0.1"
        port = server.port
    assert not server.running
    assert _refuses("127.0.0.1", port)
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url)
    server.start()
    try:
        assert server.port == port
        assert httpx.get(server.url).status_code == 200
        server.restart()
        assert httpx.get(server.url).status_code == 200
    finally:
        server.stop()
    server.stop()  # idempotent


def test_local_server_binds_127_0_0_2_only() -> None:
    with LocalServer(_app(), host="127.0.0.2") as server:
        assert server.url.startswith("http://127.0.0.2:")
        assert httpx.get(server.url).text == "hello from 127.0.0.2"
        assert _refuses("127.0.0.1", server.port)


def test_local_server_busy_port_raises() -> None:
    with LocalServer(_app()) as server, pytest.raises(OSError, match="in use"):
        LocalServer(_app(), port=server.port).start()


def test_local_server_stop_is_bounded_with_a_request_in_flight() -> None:
    with FakeOpenAI(sequence(Delay(30, Text("late")))) as fake:
        client = httpx.Client(timeout=30)

        def call() -> None:
            with contextlib.suppress(httpx.HTTPError):
                client.post(fake.url + "/v1/chat/completions", json={"model": "m", "messages": []})

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        deadline = time.monotonic() + 5
        while fake.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 4
        thread.join(5)
        assert _refuses(fake.host, fake.port)


# -- FakeOpenAI with pydantic-ai ---------------------------------------------------------------


class Verdict(BaseModel):
    answer: str
    condition_met: bool
    current_state: dict[str, Any]
    reasoning: str
    confidence: float
    sources: list[str]


YES = {
    "answer": "The event is on September 9.",
    "condition_met": True,
    "current_state": {"date": "September 9"},
    "reasoning": "The page says so.",
    "confidence": 0.9,
    "sources": ["https://example.test/news"],
}
NO = {**YES, "answer": "Not announced.", "condition_met": False, "current_state": {}}


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_openai(openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    openai_server.reset()
    yield openai_server
    openai_server.reset()


def _agent(
    fake: FakeOpenAI, *, max_retries: int | None = None, timeout: float = 10
) -> Agent[None, Verdict]:
    if max_retries is None:
        provider = OpenAIProvider(base_url=fake.url + "/v1", api_key="test")
    else:
        client = AsyncOpenAI(
            base_url=fake.url + "/v1", api_key="test", max_retries=max_retries, timeout=timeout
        )
        provider = OpenAIProvider(openai_client=client)
    model = OpenAIChatModel("local-model", provider=provider)
    return Agent(model, output_type=Verdict, instructions="You judge monitoring conditions.")


async def test_openai_structured_output_rules_and_usage(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = verdict_rules([("announced: September 9", YES)], default=NO)
    agent = _agent(fake_openai)

    result = await agent.run("Evidence: the page says nothing yet.")
    assert result.output.condition_met is False

    result = await agent.run("Evidence: Apple event announced: September 9.")
    assert result.output == Verdict.model_validate(YES)
    assert fake_openai.calls == 2

    request = fake_openai.last
    assert request.model == "local-model"
    assert request.output_tool == "final_result"
    assert request.tool_choice == "required"
    assert "You judge monitoring conditions." in request.prompt_text
    assert "announced: September 9" in request.text_of("user")
    assert request.output_schema is not None
    assert set(request.output_schema["required"]) == set(YES)

    usage = result.usage
    assert usage.requests == 1
    assert usage.input_tokens == tokens_for(request.prompt_text)
    assert usage.output_tokens == tokens_for(json.dumps(YES))
    assert fake_openai.total_prompt_tokens == sum(
        tokens_for(r.prompt_text) for r in fake_openai.chat_requests
    )


async def test_openai_default_script_answers_the_schema(fake_openai: FakeOpenAI) -> None:
    result = await _agent(fake_openai).run("anything")
    assert result.output.condition_met is False
    assert result.output.sources == []


async def test_openai_error_500_surfaces_as_model_http_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = lambda request: Error(500)
    with pytest.raises(ModelServerError) as caught:
        await _agent(fake_openai, max_retries=0).run("q")
    assert isinstance(caught.value, ModelHTTPError)
    assert caught.value.status_code == 500
    assert fake_openai.calls == 1


async def test_openai_429_with_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = lambda request: Error(429, retry_after=7)
    with pytest.raises(ModelRateLimitError) as caught:
        await _agent(fake_openai, max_retries=0).run("q")
    assert caught.value.retry_after == 7


async def test_openai_fail_next_then_sdk_retries_recover(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = lambda request: ToolCall(YES)
    fake_openai.fail_next(2, status=503, retry_after=0.01)
    result = await _agent(fake_openai).run("q")  # the openai SDK retries twice by default
    assert result.output.condition_met is True
    assert fake_openai.calls == 3
    assert [type(r).__name__ for r in fake_openai.replies] == ["Error", "Error", "ToolCall"]
    retry_counts = [r.headers.get("x-stainless-retry-count") for r in fake_openai.chat_requests]
    assert retry_counts == ["0", "1", "2"]


async def test_openai_invalid_json_arguments_make_pydantic_ai_retry(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.script = sequence(ToolCall("{not json"), ToolCall(YES))
    result = await _agent(fake_openai).run("q")
    assert result.output.condition_met is True
    assert fake_openai.calls == 2
    assert fake_openai.chat_requests[1].text_of("tool")  # the retry prompt went back as a tool msg

    fake_openai.reset()
    fake_openai.script = lambda request: ToolCall('{"answer": 1')
    with pytest.raises(UnexpectedModelBehavior):
        await _agent(fake_openai).run("q")


async def test_openai_text_reply_and_delay(fake_openai: FakeOpenAI) -> None:
    fake_openai.script = lambda request: Delay(0.2, Text("plain answer"))
    agent = Agent(
        OpenAIChatModel(
            "m", provider=OpenAIProvider(base_url=fake_openai.url + "/v1", api_key="test")
        )
    )
    started = time.monotonic()
    result = await agent.run("hi")
    assert result.output == "plain answer"
    assert time.monotonic() - started >= 0.2
    assert fake_openai.last.tools == []


async def test_openai_api_key_enforced_and_down_server() -> None:
    with FakeOpenAI(api_key="right") as fake:
        provider = OpenAIProvider(base_url=fake.url + "/v1", api_key="wrong")
        agent = Agent(OpenAIChatModel("m", provider=provider))
        with pytest.raises(ModelAuthenticationError):
            await agent.run("hi")
    with pytest.raises(ModelConnectionError):
        await _agent(fake, max_retries=0).run("hi")


def test_example_for_schema_handles_nested_models() -> None:
    class Source(BaseModel):
        url: str
        title: str | None = None

    class Nested(BaseModel):
        sources: list[Source]
        main: Source
        kind: int = 3

    value = example_for_schema(Nested.model_json_schema())
    assert Nested.model_validate(value).main.url == ""


# -- search fakes with httpx -------------------------------------------------------------------


@pytest.fixture(scope="module")
def searxng_server() -> Iterator[FakeSearxng]:
    with FakeSearxng() as fake:
        yield fake


@pytest.fixture
def searxng(searxng_server: FakeSearxng) -> Iterator[FakeSearxng]:
    searxng_server.reset()
    yield searxng_server
    searxng_server.reset()


HITS = [
    ("https://example.test/a", "Story A", "Snippet about A"),
    ("https://example.test/b", "Story B", "Snippet about B"),
]


def test_searxng_json(searxng: FakeSearxng) -> None:
    searxng.set_results("iphone event date", HITS)
    searxng.set_results(None, HITS[:1])
    response = httpx.get(
        searxng.url + "/search", params={"q": "iPhone event date", "format": "json"}
    )
    assert response.status_code == 200
    data = response.json()
    assert data["query"] == "iPhone event date"
    assert data["number_of_results"] == 2
    assert [(r["url"], r["title"], r["content"]) for r in data["results"]] == HITS
    assert data["results"][0]["engine"] == "fake"

    other = httpx.get(searxng.url + "/search", params={"q": "other", "format": "json"}).json()
    assert len(other["results"]) == 1
    assert searxng.queries == ["iPhone event date", "other"]
    assert searxng.calls == 2


def test_searxng_without_json_format_is_forbidden() -> None:
    with FakeSearxng(json_enabled=False) as fake:
        response = httpx.get(fake.url + "/search", params={"q": "x", "format": "json"})
        assert response.status_code == 403


def test_searxng_failure_and_delay(searxng: FakeSearxng) -> None:
    searxng.fail_next(1, status=502)
    params = {"q": "x", "format": "json"}
    assert httpx.get(searxng.url + "/search", params=params).status_code == 502
    assert httpx.get(searxng.url + "/search", params=params).status_code == 200
    searxng.delay(0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(searxng.url + "/search", params=params, timeout=0.1)


def test_tavily_keys_and_results() -> None:
    with FakeTavily(api_key="tvly-key") as fake:
        fake.set_results(None, HITS)
        body = {"api_key": "tvly-key", "query": "q", "max_results": 1}
        response = httpx.post(fake.url + "/search", json=body)
        assert response.status_code == 200
        data = response.json()
        assert data["query"] == "q"
        assert [r["url"] for r in data["results"]] == [HITS[0][0]]
        assert set(data["results"][0]) >= {"url", "title", "content", "score"}

        bearer = httpx.post(
            fake.url + "/search",
            json={"query": "q"},
            headers={"Authorization": "Bearer tvly-key"},
        )
        assert len(bearer.json()["results"]) == 2

        for bad in ({"query": "q"}, {"query": "q", "api_key": "nope"}):
            denied = httpx.post(fake.url + "/search", json=bad)
            assert denied.status_code == 401
            assert "error" in denied.json()["detail"]

        fake.fail_next(1, 429, retry_after=2)
        limited = httpx.post(fake.url + "/search", json=body)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "2"
        assert fake.calls == 5
        assert fake.requests[0].json()["api_key"] == "tvly-key"


def test_brave_token_and_results() -> None:
    with FakeBrave(api_key="brave-key") as fake:
        fake.set_results("rust", HITS)
        url = fake.url + "/res/v1/web/search"
        ok = httpx.get(
            url, params={"q": "rust", "count": 1}, headers={"X-Subscription-Token": "brave-key"}
        )
        assert ok.status_code == 200
        data = ok.json()
        assert data["type"] == "search"
        assert [(r["url"], r["title"], r["description"]) for r in data["web"]["results"]] == [
            HITS[0]
        ]

        missing = httpx.get(url, params={"q": "rust"})
        assert missing.status_code == 422
        assert missing.json()["error"]["code"] == "VALIDATION"
        wrong = httpx.get(url, params={"q": "rust"}, headers={"X-Subscription-Token": "x"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "SUBSCRIPTION_TOKEN_INVALID"

        fake.fail_next(1, 429)
        limited = httpx.get(
            url, params={"q": "rust"}, headers={"X-Subscription-Token": "brave-key"}
        )
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "RATE_LIMITED"
        assert fake.requests[0].headers["x-subscription-token"] == "brave-key"


# -- FakeWeb -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_server() -> Iterator[FakeWeb]:
    with FakeWeb() as fake:
        yield fake


@pytest.fixture
def web(web_server: FakeWeb) -> Iterator[FakeWeb]:
    web_server.reset()
    yield web_server
    web_server.reset()


STORY = [
    "Apple has announced that its annual product event will take place on September 9 in "
    "Cupertino, where the company is expected to show new phones and watches.",
    "The invitation, sent to reporters on Tuesday, carried the tagline that hints at new "
    "camera features and a thinner design for the flagship model this autumn.",
    "Analysts expect shipping to begin about ten days after the event, in line with the "
    "schedule the company has followed for most of the last decade.",
]


def test_web_conditional_requests(web: FakeWeb) -> None:
    web.set_page("/news", article_html("Event date", STORY))
    url = web.url_for("/news")
    with httpx.Client() as client:
        first = client.get(url)
        assert first.status_code == 200
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        assert etag == web.etag("/news")

        by_etag = client.get(url, headers={"If-None-Match": etag})
        assert by_etag.status_code == 304
        assert by_etag.content == b""
        assert by_etag.headers["etag"] == etag
        by_date = client.get(url, headers={"If-Modified-Since": modified})
        assert by_date.status_code == 304
        stale = client.get(url, headers={"If-None-Match": '"other"', "If-Modified-Since": modified})
        assert stale.status_code == 200  # If-None-Match takes precedence

        web.set_page("/news", article_html("Event date", STORY))  # same body: same validators
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304

        web.set_page("/news", article_html("Event date", [*STORY, "Update: sold out."]))
        changed = client.get(url, headers={"If-None-Match": etag})
        assert changed.status_code == 200
        assert changed.headers["etag"] != etag
        assert parsedate_to_datetime(changed.headers["last-modified"]) > parsedate_to_datetime(
            modified
        )
        assert client.get(url, headers={"If-Modified-Since": modified}).status_code == 200
        later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
        assert client.get(url, headers={"If-Modified-Since": later}).status_code == 304

    assert web.count("/news") == 8
    assert web.count_304("/news") == 4


def test_web_redirects_404_head_and_content_type(web: FakeWeb) -> None:
    with FakeWeb(host="127.0.0.2") as elsewhere:
        elsewhere.set_page("/final", "<p>far away</p>")
        web.set_page("/data.json", '{"a": 1}', content_type="application/json")
        web.redirect("/old", "/data.json", status=301)
        web.redirect("/away", elsewhere.url_for("/final"))
        with httpx.Client(follow_redirects=True) as client:
            moved = client.get(web.url_for("/old"))
            assert moved.json() == {"a": 1}
            assert moved.history[0].status_code == 301
            assert moved.headers["content-type"] == "application/json"
            away = client.get(web.url_for("/away"))
            assert str(away.url) == elsewhere.url_for("/final")
            assert away.text == "<p>far away</p>"
            assert client.get(web.url_for("/missing")).status_code == 404
            head = client.head(web.url_for("/data.json"))
            assert head.status_code == 200
            assert head.content == b""
        no_follow = httpx.get(web.url_for("/away"))
        assert no_follow.status_code == 302
        assert no_follow.headers["location"] == elsewhere.url_for("/final")
    assert web.count("/old") == 1


def test_web_slow_and_big(web: FakeWeb) -> None:
    web.set_page("/slow", "<p>slow</p>")
    web.slow("/slow", 0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(web.url_for("/slow"), timeout=0.1)

    web.set_page("/trickle", "<p>" + "x" * 1000 + "</p>")
    web.slow("/trickle", 0.3, trickle=True)
    started = time.monotonic()
    with httpx.stream("GET", web.url_for("/trickle")) as response:
        headers_after = time.monotonic() - started
        body = response.read()
    assert headers_after < 0.2
    assert time.monotonic() - started >= 0.25
    assert len(body) == 1007

    web.big("/big", 300_000)
    response = httpx.get(web.url_for("/big"))
    assert len(response.content) == 300_000
    assert response.headers["content-length"] == "300000"
    assert response.text.startswith("<!DOCTYPE html>")

    web.big("/chunked", 5_000_000, declare_length=False)
    received = 0
    with httpx.stream("GET", web.url_for("/chunked")) as response:
        assert "content-length" not in response.headers
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received > 100_000:
                break  # a client that caps the size can stop early
    assert received > 100_000


def test_web_noise_changes_bytes_not_readable_text() -> None:
    with FakeWeb(noise=True) as web:
        web.set_page("/story", article_html("Event date", STORY, nav_noise="static"))
        first = httpx.get(web.url_for("/story"))
        second = httpx.get(web.url_for("/story"))
        assert first.text != second.text
        assert "session=" in first.text.split("<nav", 1)[1].split("</nav>", 1)[0]
        assert "etag" not in first.headers
        assert httpx.get(web.url_for("/story"), headers={"If-None-Match": "*"}).status_code == 200

        text_a = trafilatura.extract(first.text)
        text_b = trafilatura.extract(second.text)
        assert text_a is not None
        assert text_a == text_b
        assert "September 9" in text_a
        assert "session=" not in text_a
        assert "Most read" not in text_a
        assert "All rights reserved" not in text_a

    plain_a = trafilatura.extract(article_html("Event date", STORY, nav_noise="sid=1 at 10:00"))
    plain_b = trafilatura.extract(article_html("Event date", STORY, nav_noise="sid=2 at 10:05"))
    assert plain_a == plain_b == text_a


def test_fail_next_applies_to_web(web: FakeWeb) -> None:
    web.set_page("/p", "<p>ok</p>")
    web.fail_next(2, status=503)
    statuses = [httpx.get(web.url_for("/p")).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert web.count("/p") == 3
    assert [r.path for r in web.requests] == ["/p"] * 3


@pytest.mark.parametrize("mode", ["native", "prompted"])
async def test_openai_json_output_modes_without_tools(fake_openai: FakeOpenAI, mode: str) -> None:
    fake_openai.script = verdict_rules([("announced", YES)], default=NO)
    output = NativeOutput(Verdict) if mode == "native" else PromptedOutput(Verdict)
    provider = OpenAIProvider(base_url=fake_openai.url + "/v1", api_key="test")
    agent = Agent(OpenAIChatModel("m", provider=provider), output_type=output)
    result = await agent.run("it was announced")
    assert result.output.condition_met is True
    assert fake_openai.last.tools == []
    if mode == "native":
        assert fake_openai.last.response_schema is not None
        fake_openai.reset()  # the default script follows the response schema too
        assert (await agent.run("q")).output.condition_met is False
