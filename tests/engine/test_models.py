"""Which models tasks may choose (TORALE_ALLOWED_MODELS), and how many model clients a process
keeps."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes import FakeOpenAI
from tests.fixtures.engine import new_task, run_now
from tests.fixtures.users import ApiUser
from torale.config import Settings
from torale.engine.evaluate import MAX_CACHED_MODELS, Evaluator

TASKS = "/api/v1/tasks"


def model_error(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "config", "model"]
    assert error["type"] == "model_not_allowed"
    message: str = error["msg"]
    return message


async def test_by_default_only_the_servers_model_may_be_chosen(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    chosen = {"search_query": "q", "config": {"model": "fake-model"}}
    assert (await client.post(TASKS, json=chosen, headers=alice.headers)).status_code == 200
    other = {"search_query": "q", "config": {"model": "openai:gpt-made-up"}}
    created = await client.post(TASKS, json=other, headers=alice.headers)
    assert model_error(created) == (
        "Model 'openai:gpt-made-up' is not allowed on this server; allowed: fake-model"
    )
    task = await new_task(client, alice)
    updated = await client.put(
        f"{TASKS}/{task['id']}", json={"config": other["config"]}, headers=alice.headers
    )
    assert "allowed: fake-model" in model_error(updated)
    preview = await client.post(
        f"{TASKS}/preview", json={"search_query": "q", **other}, headers=alice.headers
    )
    assert "allowed: fake-model" in model_error(preview)
    listing = await client.get(TASKS, headers=alice.headers)
    assert listing.json()["total"] == 2  # nothing of the refused ones written


@pytest.mark.parametrize("extra_settings", [{"allowed_models": "small, big"}])
async def test_the_operators_list_and_the_default(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    for model in ("small", "big", "fake-model"):
        body = {"search_query": "q", "config": {"model": model}}
        assert (await client.post(TASKS, json=body, headers=alice.headers)).status_code == 200
    body = {"search_query": "q", "config": {"model": "huge"}}
    message = model_error(await client.post(TASKS, json=body, headers=alice.headers))
    assert message == "Model 'huge' is not allowed on this server; allowed: fake-model, small, big"


@pytest.mark.parametrize("extra_settings", [{"model": None, "openai_base_url": None}])
async def test_without_a_default_model_no_choice_is_offered(
    client: httpx.AsyncClient, alice: ApiUser
) -> None:
    body = {"search_query": "q", "config": {"model": "anything"}}
    message = model_error(await client.post(TASKS, json=body, headers=alice.headers))
    assert "TORALE_ALLOWED_MODELS" in message


@pytest.mark.parametrize("extra_settings", [{"allowed_models": "*"}])
async def test_a_star_allows_any_model(client: httpx.AsyncClient, alice: ApiUser) -> None:
    body = {"search_query": "q", "config": {"model": "made-up-model"}}
    assert (await client.post(TASKS, json=body, headers=alice.headers)).status_code == 200


async def test_a_saved_model_the_operator_no_longer_allows_fails_the_run_unasked(
    app: Any, client: httpx.AsyncClient, alice: ApiUser, fake_model: FakeOpenAI
) -> None:
    task = await new_task(client, alice, config={"model": "fake-model"})
    # The operator narrows the list (and changes the default) after the task was saved.
    app.state.torale.run_engine.evaluator.settings.model = "other-model"
    try:
        execution = await run_now(client, alice, task["id"])
    finally:
        app.state.torale.run_engine.evaluator.settings.model = "fake-model"
    assert execution["status"] == "failed", execution
    assert "not allowed on this server" in execution["error_message"]
    assert fake_model.requests == []  # the provider was never asked


def test_model_clients_kept_are_bounded() -> None:
    settings = Settings(
        _env_file=None, model="m", openai_base_url="http://127.0.0.1:9/v1", allowed_models="*"
    )
    evaluator = Evaluator(settings)
    for index in range(MAX_CACHED_MODELS * 5):
        evaluator._agent(f"model-{index}")
    assert len(evaluator._agents) == MAX_CACHED_MODELS
    assert list(evaluator._agents)[-1] == f"model-{MAX_CACHED_MODELS * 5 - 1}"
    evaluator._agent(f"model-{MAX_CACHED_MODELS * 5 - MAX_CACHED_MODELS}")  # used again
    evaluator._agent("one-more")
    assert f"model-{MAX_CACHED_MODELS * 5 - MAX_CACHED_MODELS}" in evaluator._agents
