"""Runs that go wrong: retried transient failures, permanent ones with clear messages, model
answers that do not validate, the run deadline, no model configured, orphaned runs."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fakes import Delay, Error, FakeOpenAI, FakeSearxng, FakeWeb, ToolCall, sequence
from tests.fixtures.engine import MET, new_task, page, run_now
from tests.fixtures.users import ApiUser
from torale.db.models import Execution
from torale.executions.lifecycle import ORPHANED
from torale.tasks.schemas import TaskCreate
from torale.tasks.service import TaskPolicy, build_task


@pytest.fixture
def found_page(fake_web: FakeWeb, fake_search: FakeSearxng, fake_model: FakeOpenAI) -> str:
    fake_web.set_page("/news", page("Apple announced a date."))
    url = fake_web.url + "/news"
    fake_search.set_results(None, [(url, "News", "a snippet")])
    fake_model.script = sequence(MET)
    return url


def assert_clean_failure(execution: dict[str, Any], *fragments: str) -> None:
    assert execution["status"] == "failed", execution
    message = execution["error_message"]
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message
    assert execution["completed_at"] is not None
    assert execution["result"] is None


async def test_transient_search_failures_are_retried(
    client: httpx.AsyncClient, alice: ApiUser, fake_search: FakeSearxng, found_page: str
) -> None:
    fake_search.fail_next(2, status=503)
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success"
    assert fake_search.calls == 3


async def test_search_that_keeps_failing_fails_the_run(
    client: httpx.AsyncClient, alice: ApiUser, fake_search: FakeSearxng, found_page: str
) -> None:
    fake_search.fail_next(10, status=500)
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert_clean_failure(execution, "searxng", "HTTP 500", "after 3 attempts")
    assert fake_search.calls == 3


async def test_search_refusal_is_not_retried(
    client: httpx.AsyncClient, alice: ApiUser, fake_search: FakeSearxng, found_page: str
) -> None:
    fake_search.fail_next(1, status=400)
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert_clean_failure(execution, "searxng", "HTTP 400")
    assert fake_search.calls == 1


async def test_a_search_redirect_to_another_private_address_fails_the_run(
    client: httpx.AsyncClient, alice: ApiUser, fake_search: FakeSearxng, found_page: str
) -> None:
    fake_search.fail_next(5, status=302, headers={"location": "http://10.0.0.1/search"})
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert_clean_failure(
        execution, "Search provider searxng failed", "refused by the outbound policy"
    )
    assert "10.0.0.1" not in str(execution)
    assert fake_search.calls == 1


@pytest.mark.parametrize("extra_settings", [{"allowed_networks": ""}])
async def test_search_works_with_no_private_network_allowed(
    client: httpx.AsyncClient, alice: ApiUser, fake_search: FakeSearxng, found_page: str
) -> None:
    """The configured SearXNG (127.0.0.1) is trusted by name; the page it found, on the same
    address, is a URL from outside and stays refused (its snippet is the evidence)."""
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success", execution
    assert fake_search.calls == 1
    assert execution["usage"]["search_calls"] == 1
    assert execution["usage"]["pages_failed"] == 1


@pytest.mark.parametrize("extra_settings", [{"fetch_timeout_seconds": 0.5}])
async def test_search_timeout(
    client: httpx.AsyncClient, alice: ApiUser, fake_search: FakeSearxng, found_page: str
) -> None:
    fake_search.delay(1.5)
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert_clean_failure(execution, "searxng", "did not answer in time")


async def test_transient_model_failures_are_retried(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, found_page: str
) -> None:
    fake_model.fail_next(1, status=500)
    fake_model.fail_next(1, status=429, retry_after=0.01)
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success", execution
    assert fake_model.calls == 3


async def test_model_that_keeps_failing_fails_the_run(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, found_page: str
) -> None:
    fake_model.fail_next(10, status=503)
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert_clean_failure(execution, "fake-model", "unavailable", "after 3 attempts")
    assert fake_model.calls == 3


async def test_model_refusing_the_key_is_not_retried(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, found_page: str
) -> None:
    fake_model.script = sequence(Error(401))
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    # The model is served by TORALE_OPENAI_BASE_URL: its key is TORALE_OPENAI_API_KEY.
    assert_clean_failure(execution, "refused the credentials", "check TORALE_OPENAI_API_KEY")
    assert fake_model.calls == 1


LIBRARY_INTERNALS = ("Provider(", "api_key=", "pydantic", "Agent(")


@pytest.mark.parametrize(
    ("extra_settings", "expected"),
    [
        (
            {"model": "anthropic:claude-sonnet-4-5"},
            "ANTHROPIC_API_KEY is not set: model anthropic:claude-sonnet-4-5 needs it",
        ),
        (
            {"model": "openai:gpt-4o-mini", "openai_base_url": None},
            "OPENAI_API_KEY is not set: model openai:gpt-4o-mini needs it",
        ),
        ({"model": "gpt-nonsense", "openai_base_url": None}, "Unknown model 'gpt-nonsense'"),
    ],
    ids=["anthropic-no-key", "openai-no-key", "unknown-name"],
)
async def test_a_model_that_cannot_be_set_up_names_the_setting_not_the_library(
    client: httpx.AsyncClient,
    alice: ApiUser,
    found_page: str,
    monkeypatch: pytest.MonkeyPatch,
    expected: str,
) -> None:
    for variable in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert_clean_failure(execution, expected, "TORALE_MODEL")
    for internal in LIBRARY_INTERNALS:
        assert internal not in execution["error_message"]


@pytest.mark.parametrize(
    "reply",
    [
        ToolCall("this is not JSON {"),
        ToolCall({"answer": "x"}),  # fields missing
        ToolCall({**MET, "confidence": 7}),  # out of range
        ToolCall({**MET, "answer": "x" * 10_000}),  # over-long
        ToolCall({**MET, "current_state": {f"k{i}": i for i in range(50)}}),  # not small
    ],
    ids=["garbage", "incomplete", "out-of-range", "over-long", "huge-state"],
)
async def test_answers_that_do_not_validate_fail_cleanly(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_model: FakeOpenAI,
    found_page: str,
    reply: ToolCall,
) -> None:
    fake_model.script = sequence(reply)
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert_clean_failure(execution, "did not answer in the expected structure")
    assert fake_model.calls == 2  # asked again once, with the validation error


async def test_a_bad_answer_then_a_good_one_succeeds(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, found_page: str
) -> None:
    fake_model.script = sequence(ToolCall("{broken"), MET)
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success"
    assert execution["usage"]["llm_calls"] == 2


@pytest.mark.parametrize("extra_settings", [{"run_timeout_seconds": 1, "model_timeout_seconds": 5}])
async def test_a_run_never_outlives_its_deadline(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, found_page: str
) -> None:
    fake_model.script = sequence(Delay(3, then=ToolCall(MET)))
    task = await new_task(client, alice)
    started = datetime.now(UTC)
    execution = await run_now(client, alice, task["id"])
    assert_clean_failure(execution, "did not finish within 1 s")
    assert datetime.now(UTC) - started < timedelta(seconds=3)


@pytest.mark.parametrize("extra_settings", [{"model": None, "openai_base_url": None}])
async def test_no_model_fails_fast_and_says_what_to_set(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_search: FakeSearxng,
    found_page: str,
) -> None:
    # A model task cannot be made on a server without a model (422 at mode, naming the
    # setting) …
    refused = await client.post(
        "/api/v1/tasks", json={"search_query": "iPhone", "mode": "model"}, headers=alice.headers
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "mode"]
    assert "TORALE_MODEL" in refused.json()["detail"][0]["msg"]
    # … but one saved while the server had a model runs, and fails saying what to set.
    policy = TaskPolicy.from_settings(app.state.torale.settings)
    policy = dataclasses.replace(policy, model_configured=True)
    saved = build_task(
        user_id=alice.id,
        data=TaskCreate(search_query="When is the next iPhone release?"),
        policy=policy,
    )
    assert saved.mode == "model"
    async with app.state.torale.sessions() as session:
        session.add(saved)
        await session.commit()
    task = {"id": str(saved.id)}
    execution = await run_now(client, alice, task["id"])
    assert_clean_failure(execution, "No model is configured", "TORALE_MODEL")
    assert fake_search.calls == 0  # nothing was searched before failing
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/api/v1/tasks", headers=alice.headers)).status_code == 200


async def test_nothing_to_read_fails_the_run(
    client: httpx.AsyncClient, alice: ApiUser, fake_search: FakeSearxng, found_page: str
) -> None:
    fake_search.set_results(None, [])
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert_clean_failure(execution, "Nothing to read", "no results")


async def test_nothing_to_read_says_why_each_url_was_not_read(
    client: httpx.AsyncClient, alice: ApiUser, fake_search: FakeSearxng, fake_web: FakeWeb
) -> None:
    fake_search.set_results(None, [])
    missing = fake_web.url + "/gone"  # the fake answers 404 for paths it does not serve
    task = await new_task(client, alice, urls=[missing])
    execution = await run_now(client, alice, task["id"])
    assert_clean_failure(
        execution, "Nothing to read", "none of the task's urls could be read", missing, "404"
    )


async def test_unreadable_page_falls_back_to_the_search_snippet(
    client: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
    fake_search: FakeSearxng,
    fake_model: FakeOpenAI,
    found_page: str,
) -> None:
    fake_web.set_page("/news", "gone", status=404)
    task = await new_task(client, alice)
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success"
    assert execution["usage"]["pages_failed"] == 1
    assert fake_model.last is not None
    assert "a snippet" in fake_model.last.prompt_text


async def test_an_orphaned_run_is_swept_by_the_next_one(
    app: FastAPI, client: httpx.AsyncClient, alice: ApiUser, found_page: str
) -> None:
    task = await new_task(client, alice)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    orphan_id = uuid.uuid4()
    async with app.state.torale.sessions() as session:
        session.add(
            Execution(
                id=orphan_id,
                task_id=uuid.UUID(task["id"]),
                user_id=alice.id,
                status="running",
                trigger="schedule",
                created_at=long_ago,
                started_at=long_ago,
                lease_expires_at=long_ago + timedelta(minutes=5),
                grounding_sources=[],
                usage={},
            )
        )
        await session.commit()
    execution = await run_now(client, alice, task["id"])
    assert execution["status"] == "success"
    assert execution["id"] != str(orphan_id)
    listing = (
        await client.get(f"/api/v1/tasks/{task['id']}/executions", headers=alice.headers)
    ).json()
    orphan = next(e for e in listing["items"] if e["id"] == str(orphan_id))
    assert orphan["status"] == "failed"
    assert orphan["error_message"] == ORPHANED
