"""POST /api/v1/tasks/suggest: a draft task from the configured model (the local fake model),
validated like a create body, nothing saved; SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes import Error, FakeOpenAI, sequence
from tests.fixtures.engine import (  # noqa: F401 - fixtures, registered for this module
    DRAFT,
    _fresh_fakes,
    extra_settings,
    fake_model,
    fake_search,
    fake_web,
    settings_overrides,
)
from tests.fixtures.users import ApiUser
from torale.engine.evaluate import NO_MODEL_MESSAGE
from torale.tasks.suggest import OUTPUT_RETRIES

SUGGEST = "/api/v1/tasks/suggest"
PROMPT = "tell me when the next iPhone is announced"


async def suggest(client: httpx.AsyncClient, user: ApiUser, prompt: str = PROMPT) -> httpx.Response:
    return await client.post(SUGGEST, json={"prompt": prompt}, headers=user.headers)


async def task_count(client: httpx.AsyncClient, user: ApiUser) -> int:
    listing = await client.get("/api/v1/tasks", headers=user.headers)
    total: int = listing.json()["total"]
    return total


async def test_a_draft_is_validated_and_nothing_is_saved(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI
) -> None:
    fake_model.script = sequence(DRAFT)
    response = await suggest(client, alice)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["explanation"] == DRAFT["explanation"]
    task = body["task"]
    assert task["name"] == DRAFT["name"]
    assert task["search_query"] == DRAFT["search_query"]
    assert task["schedule"] == "0 0 * * *"  # validated like a create: the macro as 5 fields
    assert "explanation" not in task
    assert await task_count(client, alice) == 0  # nothing saved
    # The model was asked with the user's words, and told what a task is.
    [request] = fake_model.chat_requests
    assert PROMPT in request.prompt_text
    assert "mode" in (request.output_schema or {})["properties"]
    # The draft is a create body as it is.
    created = await client.post("/api/v1/tasks", json=task, headers=alice.headers)
    assert created.status_code == 200, created.text
    assert created.json()["mode"] == "model"


async def test_a_page_the_prompt_names_is_watched_by_rules(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI, fake_web: Any
) -> None:
    page = fake_web.url + "/espresso"
    draft = {
        "name": "Espresso machine under 50",
        "urls": [{"url": page, "selector": "#price"}],
        "mode": "rules",
        "rules": {"conditions": [{"kind": "number", "op": "<", "value": 50}]},
        "notify_behavior": "track_state",
        "explanation": "Reads the price every day.",
    }
    fake_model.script = sequence(draft)
    response = await suggest(client, alice, f"tell me when {page} costs less than 50")
    assert response.status_code == 200, response.text
    task = response.json()["task"]
    assert task["urls"] == [{"url": page, "selector": "#price", "render": None}]
    assert task["mode"] == "rules"
    assert task["rules"] == {"match": "all", "conditions": [draft["rules"]["conditions"][0]]}  # type: ignore[index]


async def test_a_refused_draft_goes_back_to_the_model_with_the_reason(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI
) -> None:
    too_often = DRAFT | {"schedule": "* * * * *"}  # valid cron, but under the server's minimum
    fake_model.script = sequence(too_often, DRAFT)
    response = await suggest(client, alice)
    assert response.status_code == 200, response.text
    assert response.json()["task"]["schedule"] == "0 0 * * *"
    first, second = fake_model.chat_requests
    assert "Schedule runs too often" not in first.prompt_text
    assert "Schedule runs too often" in second.text_of("tool")


async def test_a_model_that_never_drafts_a_valid_task_is_a_502(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI
) -> None:
    fake_model.script = sequence(DRAFT | {"urls": ["http://10.0.0.7/"]})  # a private address
    response = await suggest(client, alice)
    assert response.status_code == 502, response.text
    detail = response.json()["detail"]
    assert f"drafted no valid task in {OUTPUT_RETRIES + 1} attempts" in detail
    assert "urls.0: URL points to a private" in detail
    assert len(fake_model.chat_requests) == OUTPUT_RETRIES + 1
    assert await task_count(client, alice) == 0


async def test_a_failing_model_is_a_502(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI
) -> None:
    fake_model.script = sequence(Error(401))
    response = await suggest(client, alice)
    assert response.status_code == 502
    assert response.json()["detail"] == (
        "The provider of model fake-model refused the credentials: check TORALE_OPENAI_API_KEY"
    )


@pytest.mark.parametrize("extra_settings", [{"model": None}])
async def test_without_a_model_it_is_a_503_naming_what_to_set(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI
) -> None:
    response = await suggest(client, alice)
    assert response.status_code == 503
    assert response.json() == {"detail": NO_MODEL_MESSAGE}
    assert "TORALE_MODEL" in NO_MODEL_MESSAGE
    assert fake_model.chat_requests == []


async def test_bad_prompts_and_callers_are_refused(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI
) -> None:
    for body in ({"prompt": "  "}, {}, {"prompt": "x" * 2001}, {"prompt": "a", "extra": 1}):
        response = await client.post(SUGGEST, json=body, headers=alice.headers)
        assert response.status_code == 422, (body, response.text)
    assert (await client.post(SUGGEST, json={"prompt": PROMPT})).status_code == 401
    assert fake_model.chat_requests == []


@pytest.mark.parametrize("extra_settings", [{"rate_limits": "2/minute"}])
async def test_suggestions_count_against_the_rate_limit(
    client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI
) -> None:
    fake_model.script = sequence(DRAFT)
    assert (await suggest(client, alice)).status_code == 200
    assert (await suggest(client, alice)).status_code == 200
    refused = await suggest(client, alice)
    assert refused.status_code == 429
    assert "retry-after" in refused.headers
    assert len(fake_model.chat_requests) == 2
