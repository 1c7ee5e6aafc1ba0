"""`torale serve` and `torale worker` started without a model next to a local Ollama (a local
fake at TORALE_OLLAMA_URL) use its model and say so; with autodetection off they warn that no
model is configured, as before."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes import FakeOllama
from tests.fixtures.processes import StartServer, clean_env, start_server

__all__ = ["start_server"]  # the fixture, used below

KEY = re.compile(r"sk_[A-Za-z0-9_-]{43}")


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    with FakeOllama(models=["llama3.1:8b"]) as fake:
        yield fake


def test_serve_uses_the_local_model_and_says_so(
    tmp_path: Path, start_server: StartServer, fake_ollama: FakeOllama
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {"TORALE_OLLAMA_AUTODETECT": "true", "TORALE_OLLAMA_URL": fake_ollama.url}
    server = start_server(data_dir, env)
    assert f"using llama3.1:8b from the local Ollama at {fake_ollama.url}" in server.stderr
    assert "no model is configured, so" not in server.stderr  # the no-model warning
    [key] = set(KEY.findall(server.stdout))
    created = httpx.post(
        f"{server.base_url}/api/v1/tasks",
        json={"search_query": "When is the next iPhone?"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert created.status_code == 200, created.text  # a model task: there is a model
    assert created.json()["mode"] == "model"


def test_without_autodetection_the_start_warns_as_before(
    tmp_path: Path, start_server: StartServer, fake_ollama: FakeOllama
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = start_server(data_dir, {"TORALE_OLLAMA_URL": fake_ollama.url})  # off in tests
    assert "no model is configured" in server.stderr
    assert "TORALE_OLLAMA_AUTODETECT=false: a local Ollama is not looked for" in server.stderr
    assert fake_ollama.calls == 0


def test_the_worker_says_so_too(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = clean_env(
        data_dir, {"TORALE_OLLAMA_AUTODETECT": "true", "TORALE_OLLAMA_URL": fake_ollama.url}
    )
    stderr_path = tmp_path / "worker.stderr"
    with stderr_path.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "torale", "worker"],
            env=env,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        expected = f"using llama3.1:8b from the local Ollama at {fake_ollama.url}"
        deadline = time.monotonic() + 60
        while expected not in stderr_path.read_text() and time.monotonic() < deadline:
            assert worker.poll() is None, stderr_path.read_text()
            time.sleep(0.1)
        assert expected in stderr_path.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=15)
