"""The browser's tests: a real Chromium (Debian's), the local fakes for the web, and a sink on
127.0.0.2 that nothing may reach."""

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakes.sink import Sink
from tests.fixtures.browser import browser_fetcher, require_chromium
from tests.fixtures.engine import (  # noqa: F401 - fixtures, registered for this package
    _fresh_fakes,
    extra_settings,
    fake_model,
    fake_search,
    fake_web,
    settings_overrides,
)
from torale.browser.fetcher import BrowserFetcher
from torale.browser.pool import BrowserPool

FETCH_TIMEOUT = 8.0


@pytest.fixture(scope="session")
def chromium() -> str:
    return require_chromium()


@pytest.fixture(scope="session")
def sink() -> Iterator[Sink]:
    with Sink("127.0.0.2") as made:
        yield made


@pytest.fixture(autouse=True)
def _fresh_sink(sink: Sink) -> None:
    sink.reset()


@pytest.fixture
async def pool(chromium: str) -> AsyncIterator[BrowserPool]:
    made = BrowserPool(executable=chromium, concurrency=2)
    yield made
    await made.close()


@pytest.fixture
def fetcher(pool: BrowserPool) -> BrowserFetcher:
    return browser_fetcher(pool, timeout=FETCH_TIMEOUT)
