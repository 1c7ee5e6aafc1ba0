"""Each search provider against a local server speaking its API, and the choice of provider."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes import FakeBrave, FakeSearxng, FakeTavily
from torale.config import Settings
from torale.engine.search.base import SearchError
from torale.engine.search.http import search_client
from torale.engine.search.providers import (
    BraveSearch,
    DuckDuckGoSearch,
    SearxngSearch,
    TavilySearch,
)
from torale.engine.search.registry import search_provider

HITS = [
    ("https://a.example/1", "First", "one"),
    ("https://b.example/2", "Second", "two"),
    ("https://c.example/3", "Third", "three"),
]


@pytest.fixture(scope="module")
def tavily() -> Iterator[FakeTavily]:
    with FakeTavily(api_key="tvly-right") as fake:
        yield fake


@pytest.fixture(scope="module")
def brave() -> Iterator[FakeBrave]:
    with FakeBrave(api_key="brave-right") as fake:
        yield fake


@pytest.fixture(scope="module")
def searxng() -> Iterator[FakeSearxng]:
    with FakeSearxng() as fake:
        yield fake


async def test_searxng(searxng: FakeSearxng) -> None:
    searxng.reset()
    searxng.set_results("iphone", HITS)
    async with httpx.AsyncClient() as client:
        provider = SearxngSearch(client, searxng.url, retries=0, backoff=0.01)
        results = await provider.search("iphone", max_results=2)
    assert [(r.url, r.title, r.snippet) for r in results] == HITS[:2]
    assert searxng.requests[-1].query["format"] == "json"


def _search_settings(**values: object) -> Settings:
    """Settings that open no private network: only the configured search hosts are trusted."""
    return Settings(_env_file=None, secret_key="k", provider_retries=2, **values)  # type: ignore[arg-type]


async def test_the_engine_client_reaches_a_local_searxng_without_private_networks(
    searxng: FakeSearxng,
) -> None:
    searxng.reset()
    searxng.set_results("iphone", HITS)
    settings = _search_settings(searxng_url=searxng.url)
    assert not settings.allow_private_networks
    assert not settings.allowed_network_list
    async with search_client(settings) as client:
        provider = search_provider("searxng", settings, client)
        results = await provider.search("iphone", max_results=3)
    assert [r.url for r in results] == [h[0] for h in HITS]


@pytest.fixture(scope="module")
def other_loopback() -> Iterator[FakeSearxng]:
    """A SearXNG on 127.0.0.2: private, and not the configured host."""
    with FakeSearxng(host="127.0.0.2") as fake:
        fake.set_results(None, HITS)
        yield fake


@pytest.mark.parametrize("target", ["http://127.0.0.2:{port}/search", "http://10.0.0.1/search"])
async def test_a_redirect_from_the_search_api_elsewhere_is_refused(
    searxng: FakeSearxng, other_loopback: FakeSearxng, target: str
) -> None:
    searxng.reset()
    other_loopback.reset()
    location = target.format(port=other_loopback.port)
    searxng.fail_next(5, status=302, headers={"location": location})
    settings = _search_settings(searxng_url=searxng.url)
    async with search_client(settings) as client:
        provider = search_provider("searxng", settings, client)
        with pytest.raises(SearchError) as failed:
            await provider.search("my secret plans", max_results=3)
    message = str(failed.value)
    assert message == (
        "Search provider searxng failed: refused by the outbound policy: check TORALE_SEARXNG_URL"
    )
    assert searxng.calls == 1  # a refusal is not retried
    assert other_loopback.calls == 0


async def test_a_redirect_within_the_search_host_is_followed(searxng: FakeSearxng) -> None:
    searxng.reset()
    searxng.set_results("iphone", HITS)
    searxng.fail_next(
        1, status=307, headers={"location": searxng.url + "/search?q=iphone&format=json"}
    )
    settings = _search_settings(searxng_url=searxng.url)
    async with search_client(settings) as client:
        results = await search_provider("searxng", settings, client).search("iphone", max_results=3)
    assert len(results) == 3
    assert searxng.calls == 2


async def test_endless_redirects_fail_the_search(searxng: FakeSearxng) -> None:
    searxng.reset()
    searxng.fail_next(10, status=302, headers={"location": searxng.url + "/search"})
    settings = _search_settings(searxng_url=searxng.url)
    async with search_client(settings) as client:
        with pytest.raises(SearchError, match="searxng failed: more than 3 redirects"):
            await search_provider("searxng", settings, client).search("q", max_results=3)
    assert searxng.calls == 4


async def test_the_engine_client_reaches_tavily_and_brave_at_their_configured_hosts(
    tavily: FakeTavily, brave: FakeBrave
) -> None:
    tavily.reset()
    brave.reset()
    tavily.set_results(None, HITS)
    brave.set_results(None, HITS)
    settings = _search_settings(
        tavily_url=tavily.url,
        tavily_api_key="tvly-right",
        brave_url=brave.url,
        brave_api_key="brave-right",
    )
    async with search_client(settings) as client:
        for name in ("tavily", "brave"):
            results = await search_provider(name, settings, client).search("q", max_results=3)
            assert len(results) == 3


async def test_tavily(tavily: FakeTavily) -> None:
    tavily.reset()
    tavily.set_results("iphone", HITS)
    async with httpx.AsyncClient() as client:
        results = await TavilySearch(client, tavily.url, "tvly-right", 0, 0.01).search(
            "iphone", max_results=3
        )
        assert [r.url for r in results] == [h[0] for h in HITS]
        with pytest.raises(SearchError, match="TORALE_TAVILY_API_KEY"):
            await TavilySearch(client, tavily.url, "tvly-wrong", 0, 0.01).search(
                "iphone", max_results=3
            )


async def test_brave(brave: FakeBrave) -> None:
    brave.reset()
    brave.set_results("iphone", HITS)
    async with httpx.AsyncClient() as client:
        results = await BraveSearch(client, brave.url, "brave-right", 0, 0.01).search(
            "iphone", max_results=2
        )
        assert [(r.url, r.snippet) for r in results] == [
            ("https://a.example/1", "one"),
            ("https://b.example/2", "two"),
        ]
        with pytest.raises(SearchError, match="TORALE_BRAVE_API_KEY"):
            await BraveSearch(client, brave.url, "brave-wrong", 0, 0.01).search(
                "iphone", max_results=2
            )


async def test_retries_honour_retry_after_then_give_up(brave: FakeBrave) -> None:
    brave.reset()
    brave.set_results(None, HITS)
    brave.fail_next(1, status=429, retry_after=0.01)
    async with httpx.AsyncClient() as client:
        provider = BraveSearch(client, brave.url, "brave-right", 2, 0.01)
        assert len(await provider.search("q", max_results=3)) == 3
        assert brave.calls == 2
        brave.fail_next(5, status=502)
        with pytest.raises(SearchError, match=r"HTTP 502\) after 3 attempts"):
            await provider.search("q", max_results=3)


async def test_unreachable_provider(tmp_path: object) -> None:
    async with httpx.AsyncClient() as client:
        provider = SearxngSearch(client, "http://127.0.0.1:1", retries=1, backoff=0.01)
        with pytest.raises(SearchError, match="Cannot reach search provider searxng"):
            await provider.search("q", max_results=3)


async def test_unreachable_provider_names_the_setting_to_check_not_the_query() -> None:
    async with httpx.AsyncClient() as client:
        provider = SearxngSearch(client, "http://127.0.0.1:1", retries=0, backoff=0.01)
        with pytest.raises(SearchError) as failed:
            await provider.search("my secret plans", max_results=3)
    message = str(failed.value)
    assert "TORALE_SEARXNG_URL" in message
    assert "secret" not in message
    assert "127.0.0.1" not in message


async def test_offline_duckduckgo_says_which_provider_and_setting_without_the_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offline, ddgs's own message lists the engines it tried (Yahoo, Startpage, …) with their
    request URLs, the query in them. The run's message names our provider and setting only."""
    # Every request ddgs makes goes through this proxy, where nothing listens: as offline.
    monkeypatch.setenv("DDGS_PROXY", "http://127.0.0.1:1")
    provider = DuckDuckGoSearch(timeout=2, retries=0, backoff=0.01)
    with pytest.raises(SearchError) as failed:
        await provider.search("my secret plans", max_results=3)
    message = str(failed.value)
    assert "duckduckgo" in message
    assert "TORALE_SEARCH_PROVIDER" in message
    assert "secret" not in message
    assert "://" not in message
    for engine in ("yahoo", "startpage", "brave.com", "mojeek", "wikipedia"):
        assert engine not in message.lower()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("searxng", "TORALE_SEARXNG_URL"),
        ("tavily", "TORALE_TAVILY_API_KEY"),
        ("brave", "TORALE_BRAVE_API_KEY"),
    ],
)
def test_a_provider_without_its_settings_says_what_to_set(name: str, message: str) -> None:
    settings = Settings(_env_file=None, secret_key="k")
    with pytest.raises(SearchError, match=message):
        search_provider(name, settings, httpx.AsyncClient())


def test_task_config_overrides_the_server_default() -> None:
    settings = Settings(_env_file=None, secret_key="k", search_provider="none")
    client = httpx.AsyncClient()
    assert search_provider(None, settings, client).name == "none"
    assert search_provider("duckduckgo", settings, client).name == "duckduckgo"
