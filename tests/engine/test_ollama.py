"""A local Ollama is used when no model is configured: found at TORALE_OLLAMA_URL (a local
fake here, never the real port 11434) through `GET /api/tags`, used through its
OpenAI-compatible `/v1`; not looked for when a model is set or autodetection is off; nothing
listening, or something that never answers, does not hold the start up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import FakeOllama, FakeWeb, verdict_rules
from tests.fakes.silent import SilentServer
from tests.fixtures.engine import MET, NOT_MET, page, run_now
from tests.fixtures.processes import free_port
from tests.fixtures.services import TEST_SECRET
from tests.fixtures.users import ApiUser
from torale.config import Settings
from torale.engine import ollama
from torale.engine.ollama import find_local_model, use_local_model


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama(models=["llama3.1:8b", "qwen2.5:7b"], embedding=["nomic-embed-text"]) as fake:
        yield fake


def test_a_local_ollama_with_a_model_is_used(fake_ollama: FakeOllama) -> None:
    found = settings(ollama_url=fake_ollama.url)
    message = use_local_model(found)
    assert found.model == "llama3.1:8b"
    assert found.openai_base_url == fake_ollama.url + "/v1"
    assert found.allowed_model_list == ("llama3.1:8b",)  # what tasks may choose follows
    assert message is not None
    assert f"using llama3.1:8b from the local Ollama at {fake_ollama.url}" in message
    assert "(it has 1 other model)" in message  # the embedding model is not a choice
    assert "TORALE_MODEL" in message
    assert "TORALE_OLLAMA_AUTODETECT=false" in message
    assert [r.path for r in fake_ollama.requests] == ["/api/tags"]


def test_a_configured_model_or_autodetect_off_asks_nothing(fake_ollama: FakeOllama) -> None:
    for configured in (
        settings(ollama_url=fake_ollama.url, model="openai:gpt-4o-mini"),
        settings(ollama_url=fake_ollama.url, openai_base_url="http://127.0.0.1:9/v1"),
        settings(ollama_url=fake_ollama.url, ollama_autodetect=False),
    ):
        before = configured.model_dump()
        assert use_local_model(configured) is None
        assert configured.model_dump() == before
    assert fake_ollama.calls == 0


def test_only_embedding_models_or_none_are_no_model() -> None:
    for models in ([], ["nomic-embed-text"]):
        with FakeOllama(models=[], embedding=models) as fake:
            empty = settings(ollama_url=fake.url)
            assert use_local_model(empty) is None
            assert empty.model is None
            assert empty.openai_base_url is None


def test_nothing_listening_or_a_silent_port_does_not_hold_the_start_up() -> None:
    began = time.monotonic()
    assert find_local_model(settings(ollama_url=f"http://127.0.0.1:{free_port()}")) is None
    assert time.monotonic() - began < 0.5  # refused at once
    with SilentServer() as silent:
        began = time.monotonic()
        assert find_local_model(settings(ollama_url=f"http://127.0.0.1:{silent.port}")) is None
        assert time.monotonic() - began < ollama.PROBE_TIMEOUT_SECONDS + 1.0
        assert silent.asked()[0] == 1
    broken = settings(ollama_url="http://127.0.0.1:1")  # no such service either
    assert use_local_model(broken) is None


def test_a_name_a_provider_would_claim_stays_on_ollama() -> None:
    with FakeOllama(models=["mistral:7b"]) as fake:
        found = settings(ollama_url=fake.url)
        use_local_model(found)
        assert found.model == "openai:mistral:7b"  # not pydantic-ai's mistral provider


# --- a server that found it: model tasks run on the local model ----------------------------


@pytest.fixture(scope="module")
def module_ollama() -> Iterator[FakeOllama]:
    with FakeOllama(models=["llama3.1:8b"]) as fake:
        yield fake


@pytest.fixture
def settings_overrides(fake_web: FakeWeb) -> dict[str, Any]:
    return {"allowed_networks": "127.0.0.1/32", "search_provider": "none"}


@pytest.fixture(name="settings")
def found_settings(
    database_url: str,
    tmp_path: Path,
    settings_overrides: dict[str, Any],
    module_ollama: FakeOllama,
) -> Settings:
    """As `torale serve` starts without a model next to a local Ollama."""
    module_ollama.reset()
    module_ollama.script = verdict_rules([("September 9", MET)], NOT_MET)
    started = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET,
        ollama_url=module_ollama.url,
        **settings_overrides,
    )
    assert use_local_model(started) is not None
    return started


async def test_model_tasks_run_on_the_local_model(
    client: httpx.AsyncClient, alice: ApiUser, fake_web: FakeWeb, module_ollama: FakeOllama
) -> None:
    fake_web.set_page("/news", page("Apple announced the iPhone 18 for September 9."))
    created = await client.post(
        "/api/v1/tasks",
        json={"search_query": "When is the next iPhone?", "urls": [fake_web.url + "/news"]},
        headers=alice.headers,
    )
    assert created.status_code == 200, created.text  # not a 422 "no model configured"
    assert created.json()["mode"] == "model"
    execution = await run_now(client, alice, created.json()["id"])
    assert execution["status"] == "success", execution
    assert execution["condition_met"] is True
    [chat] = module_ollama.chat_requests
    assert chat.model == "llama3.1:8b"
    assert module_ollama.requests[-1].path == "/v1/chat/completions"
