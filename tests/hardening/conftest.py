"""Fixtures of the hardening tests: the local stand-ins for the internet, a connect spy, and
settings that keep the outbound guard on with exactly 127.0.0.1 allowed (as the engine and
notification tests do), so that every other private address — 127.0.0.2 included — is refused
as it would be in production.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes import FakeOpenAI, FakeSearxng, FakeWeb, WebhookReceiver
from tests.fixtures.engine import fake_model, fake_search, fake_web  # noqa: F401 - shared fakes
from tests.fixtures.logs import ServerLog
from tests.hardening.netguard import ConnectSpy
from torale.logs import OneLineFormatter, configure_logging


@pytest.fixture(autouse=True)
def _fresh_fakes(request: pytest.FixtureRequest) -> None:
    """Reset the session fakes a test uses (and only those: no fake is started for nothing)."""
    for name in ("fake_model", "fake_search", "fake_web"):
        if name in request.fixturenames:
            fake = request.getfixturevalue(name)
            fake.reset()
            if isinstance(fake, FakeSearxng):
                fake.clear_results()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A receiver on 127.0.0.1, the one private address the settings allow."""
    with WebhookReceiver() as fake:
        yield fake


@pytest.fixture
def forbidden() -> Iterator[WebhookReceiver]:
    """A receiver on 127.0.0.2: loopback, outside TORALE_ALLOWED_NETWORKS=127.0.0.1/32. It must
    never receive anything."""
    with WebhookReceiver(host="127.0.0.2") as fake:
        yield fake


@pytest.fixture
def forbidden_web() -> Iterator[FakeWeb]:
    """A web server on 127.0.0.2 with an 'internal' page that must never be read."""
    with FakeWeb(host="127.0.0.2") as web:
        web.set_page("/secret", "<html><body><p>internal admin data</p></body></html>")
        yield web


@pytest.fixture
def connect_spy(forbidden: WebhookReceiver, forbidden_web: FakeWeb) -> Iterator[ConnectSpy]:
    """Installed after the forbidden servers started (their own readiness probes are not
    recorded); see tests/hardening/netguard.py."""
    with ConnectSpy().installed() as spy:
        yield spy


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    """Parametrise this (indirectly) to change a setting for one test."""
    return {}


@pytest.fixture
def settings_overrides(
    fake_model: FakeOpenAI, fake_search: FakeSearxng, extra_settings: dict[str, Any]
) -> dict[str, Any]:
    return {
        "model": "fake-model",
        "openai_base_url": fake_model.url + "/v1",
        "search_provider": "searxng",
        "searxng_url": fake_search.url,
        "allowed_networks": "127.0.0.1/32",
        "allow_http_webhooks": True,
        "provider_retries": 0,
        "fetch_timeout_seconds": 2,
        "model_timeout_seconds": 5,
        "run_timeout_seconds": 15,
        "delivery_retry_delays": "0.05",
        "scheduler_poll_seconds": 0.05,
        "webhook_timeout_seconds": 2,
        **extra_settings,
    }


@pytest.fixture
def log_level() -> str:
    """TORALE_LOG_LEVEL for `server_log`: the default, info (parametrize to change)."""
    return "info"


@pytest.fixture
def server_log(log_level: str) -> Iterator[ServerLog]:
    """Logging set up exactly as `torale serve` does (`configure_logging` at `log_level`), with
    the output captured; the previous logging state is restored."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    configure_logging(log_level)
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    assert isinstance(handler.formatter, OneLineFormatter)
    capture = ServerLog(io.StringIO())
    handler.setStream(capture.stream)
    try:
        yield capture
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, logger in logging.root.manager.loggerDict.items():
            if isinstance(logger, logging.Logger):
                logger.setLevel(levels.get(name, logging.NOTSET))
