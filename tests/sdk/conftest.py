"""The SDK and the client CLI against a real `torale serve` (SQLite, one process per package).

One server is started for the whole package, on a free port, with a temporary data dir, high
rate limits, and the engine pointed at the local fakes of the engine tests (search, web, model).
Its bootstrap admin key is read from its stdout. Every test gets its own config file
(TORALE_CONFIG_FILE in tmp_path) and no TORALE_API_* variable, so the developer's own
~/.torale is never read or written. Tests that count things get a user of their own.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.e2e.conftest import Server, clean_env, free_port
from tests.engine.conftest import MET, fake_model, fake_search, fake_web, page
from tests.fakes import Error, FakeOpenAI, FakeSearxng, FakeWeb, WebhookReceiver, verdict_rules
from tests.sdk.newer_server import NewerServer, newer, record_answers
from tests.sdk.readme import TERMINAL_TEST, TerminalRun, start_terminal_example
from torale.cli import app as cli_app

__all__ = ["fake_model", "fake_search", "fake_web"]  # fixtures shared with the engine tests

KEY_RE = re.compile(r"sk_[A-Za-z0-9_-]{43}")
NEWS_PATH = "/sdk-news"
NEWS_TITLE = "Apple Newsroom"
NEWS_TEXT = "Apple announced September 9."
FAILING_QUERY = "a query the model refuses"  # the fake model answers it with an HTTP 401


@dataclass(frozen=True)
class Api:
    """A running `torale serve` and its admin key."""

    server: Server
    admin_key: str
    data_dir: Path

    @property
    def url(self) -> str:
        return self.server.base_url


@dataclass(frozen=True)
class Fakes:
    """The stand-ins for the internet the server's engine talks to."""

    model: FakeOpenAI
    search: FakeSearxng
    web: FakeWeb

    @property
    def news_url(self) -> str:
        return self.web.url + NEWS_PATH


def start_torale(workdir: Path, extra_env: Mapping[str, str]) -> tuple[Server, Path]:
    """`python -m torale serve` on a free port, healthy; the caller stops it."""
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    port = free_port()
    stdout_path, stderr_path = workdir / "serve.stdout", workdir / "serve.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "torale", "serve", "--port", str(port)],
            env=clean_env(data_dir, extra_env),
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    server = Server(proc=proc, port=port, stdout_path=stdout_path, stderr_path=stderr_path)
    try:
        server.wait_healthy()
    except BaseException:
        server.stop()
        raise
    return server, data_dir


def bootstrap_key(server: Server) -> str:
    """The admin key the first start printed."""
    keys: set[str] = set(KEY_RE.findall(server.stdout))
    assert len(keys) == 1, server.describe()
    return keys.pop()


@pytest.fixture(scope="package")
def fakes(fake_model: FakeOpenAI, fake_search: FakeSearxng, fake_web: FakeWeb) -> Fakes:
    """Every search finds one news page, and the model says the condition is met (except for
    FAILING_QUERY, which it refuses with a 401: the run fails)."""
    for fake in (fake_model, fake_search, fake_web):
        fake.reset()
    fake_web.set_page(NEWS_PATH, page(NEWS_TEXT, title=NEWS_TITLE))
    fake_search.set_results(None, [(fake_web.url + NEWS_PATH, "News", "")])
    fake_model.script = verdict_rules([(FAILING_QUERY, Error(401))], MET)
    return Fakes(fake_model, fake_search, fake_web)


def server_env(fakes: Fakes, **extra: str) -> dict[str, str]:
    return {
        "TORALE_MODEL": "fake-model",
        "TORALE_OPENAI_BASE_URL": fakes.model.url + "/v1",
        "TORALE_SEARCH_PROVIDER": "searxng",
        "TORALE_SEARXNG_URL": fakes.search.url,
        "TORALE_ALLOWED_NETWORKS": "127.0.0.1/32",
        "TORALE_ALLOW_HTTP_WEBHOOKS": "true",
        "TORALE_RATE_LIMITS": "100000/minute",
        "TORALE_PROVIDER_RETRIES": "1",
        "TORALE_RETRY_BACKOFF_SECONDS": "0.01",
        "TORALE_FETCH_TIMEOUT_SECONDS": "5",
        "TORALE_MODEL_TIMEOUT_SECONDS": "10",
        "TORALE_RUN_TIMEOUT_SECONDS": "30",
        "TORALE_SCHEDULER_POLL_SECONDS": "0.2",
        "TORALE_LOG_LEVEL": "warning",
        **extra,
    }


@pytest.fixture(scope="package")
def api(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server, data_dir = start_torale(tmp_path_factory.mktemp("torale-sdk"), server_env(fakes))
    try:
        yield Api(server=server, admin_key=bootstrap_key(server), data_dir=data_dir)
    finally:
        server.stop()


MakeUser = Callable[[str], str]
_user_numbers = itertools.count(1)


@pytest.fixture(scope="package")
def make_user(api: Api) -> MakeUser:
    """Factory: a new user (by email prefix) with an API key, made by `torale keys create`."""

    def make(prefix: str) -> str:
        email = f"{prefix}-{next(_user_numbers)}@example.com"
        result = CliRunner().invoke(
            cli_app,
            ["keys", "create", "--email", email],
            env={"TORALE_DATA_DIR": str(api.data_dir), "TORALE_LOG_LEVEL": "warning"},
        )
        assert result.exit_code == 0, result.output
        match = KEY_RE.search(result.stdout)
        assert match, result.output
        return match.group(0)

    return make


@pytest.fixture
def user_key(make_user: MakeUser) -> str:
    """A fresh user of this test alone (nothing else lists its tasks)."""
    return make_user("sdk")


@pytest.fixture(autouse=True)
def _no_client_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The SDK and CLI read no real config: an empty config file of the test's own."""
    path = tmp_path / "torale-config" / "config.json"
    monkeypatch.setenv("TORALE_CONFIG_FILE", str(path))
    monkeypatch.delenv("TORALE_API_KEY", raising=False)
    monkeypatch.delenv("TORALE_API_URL", raising=False)
    return path


@pytest.fixture
def config_file(_no_client_config: Path) -> Path:
    return _no_client_config


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


@pytest.fixture(scope="package")
def newer_server(api: Api, make_user: MakeUser) -> Iterator[NewerServer]:
    """A server newer than the SDK (see newer_server.py), from what this one answered."""
    with WebhookReceiver() as hook:
        answers = record_answers(api.url, make_user("newer"), hook)
    server = NewerServer(newer(answers))
    with server.server:
        yield server


@pytest.fixture(scope="package", autouse=True)
def terminal_example(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TerminalRun | None]:
    """The README's shell block, started in the background when its test is selected (it
    spends most of its time importing the SDK, ten times), with a user of its own."""
    if not any(item.name == TERMINAL_TEST for item in request.session.items):
        yield None
        return
    api: Api = request.getfixturevalue("api")
    key = request.getfixturevalue("make_user")("readme-terminal")
    run = start_terminal_example(tmp_path_factory.mktemp("readme-terminal"), api.url, key)
    try:
        yield run
    finally:
        run.stop()
