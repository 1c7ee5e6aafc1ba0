"""Page, search and model requests end at their deadline, whatever the server does, and page
and search answers are read no further than their limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.fakes import StallingServer
from torale.config import Settings
from torale.engine.evaluate import EvaluationError, Evaluator
from torale.engine.fetch import Fetcher, FetchFailedError
from torale.engine.search.base import SearchError
from torale.engine.search.http import MAX_ANSWER_BYTES, search_client
from torale.engine.search.providers import SearxngSearch
from torale.net import OutboundPolicy

DEADLINE = 1.0


@pytest.fixture
def endless() -> Iterator[StallingServer]:
    with StallingServer("endless") as server:
        yield server


@pytest.fixture
def trickle() -> Iterator[StallingServer]:
    with StallingServer("trickle") as server:
        yield server


def _search_settings(url: str) -> Settings:
    """The engine's search client for a SearXNG at `url` (trusted by name; no private network)."""
    return Settings(_env_file=None, searxng_url=url, fetch_timeout_seconds=DEADLINE)


async def test_search_reads_no_endless_answer(endless: StallingServer) -> None:
    async with search_client(_search_settings(endless.url)) as client:
        provider = SearxngSearch(client, endless.url, 0, 0.01, deadline=10)
        with pytest.raises(SearchError, match="more than"):
            await asyncio.wait_for(provider.search("q", max_results=3), 20)
    assert endless.wait_closed(2)
    assert endless.bytes_sent < MAX_ANSWER_BYTES + 512 * 1024, endless.bytes_sent


async def test_search_to_a_trickling_server_ends_at_its_deadline(
    trickle: StallingServer,
) -> None:
    async with search_client(_search_settings(trickle.url)) as client:
        provider = SearxngSearch(client, trickle.url, 1, 0.01, deadline=DEADLINE)
        started = time.monotonic()
        with pytest.raises(SearchError, match="did not answer in time after 2 attempts"):
            await asyncio.wait_for(provider.search("q", max_results=3), 2 * DEADLINE + 10)
    assert time.monotonic() - started < 2 * DEADLINE + 3


async def test_model_to_a_trickling_server_ends_at_its_deadline(
    trickle: StallingServer,
) -> None:
    settings = Settings(
        _env_file=None,
        model="slow-model",
        openai_base_url=trickle.url + "/v1",
        model_timeout_seconds=DEADLINE,
        provider_retries=0,
    )
    evaluator = Evaluator(settings)
    evaluator._agent("slow-model")  # the model library loads first: not part of the request
    started = time.monotonic()
    with pytest.raises(EvaluationError, match="did not answer within 1 s"):
        await asyncio.wait_for(evaluator.evaluate(model="slow-model", prompt="p"), DEADLINE + 10)
    assert time.monotonic() - started < DEADLINE + 3


async def test_page_fetch_to_a_trickling_server_ends_at_its_deadline(
    trickle: StallingServer,
) -> None:
    fetcher = Fetcher(
        OutboundPolicy(allow_private=True), timeout=DEADLINE, max_bytes=100_000, max_chars=1000
    )
    started = time.monotonic()
    try:
        with pytest.raises(FetchFailedError, match="no answer within 1 s"):
            await asyncio.wait_for(fetcher.fetch(trickle.url_for("/page")), DEADLINE + 10)
    finally:
        await fetcher.close()
    assert time.monotonic() - started < DEADLINE + 3


async def test_page_fetch_reads_no_more_than_its_limit(endless: StallingServer) -> None:
    fetcher = Fetcher(
        OutboundPolicy(allow_private=True), timeout=10, max_bytes=100_000, max_chars=1000
    )
    try:
        with pytest.raises(FetchFailedError, match="larger than 100000 bytes"):
            await asyncio.wait_for(fetcher.fetch(endless.url_for("/page")), 20)
    finally:
        await fetcher.close()
    assert endless.wait_closed(2)
    assert endless.bytes_sent < 100_000 + 512 * 1024, endless.bytes_sent
