"""The outbound policy holds inside the browser: whatever a page asks for, a host the policy
forbids (the sink on 127.0.0.2) sees no request, no connection and no packet, and the page is
still read."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes import FakeWeb
from tests.fakes.echo import EchoWebSocket
from tests.fakes.sink import Sink
from tests.fixtures.browser import (
    browser_fetcher,
    hostile_embeds,
    hostile_fetch,
    hostile_webrtc,
    hostile_websocket,
)
from torale.browser.fetcher import BrowserFetcher
from torale.browser.pool import BrowserPool
from torale.engine.fetch import FetchFailedError

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


async def _settled(sink: Sink) -> tuple[int, int]:
    """What reached the sink, once anything on its way has had time to arrive."""
    await asyncio.sleep(0.5)
    return sink.touched()


async def test_a_script_fetching_a_private_address_gets_nothing(
    fake_web: FakeWeb, fetcher: BrowserFetcher, sink: Sink
) -> None:
    fake_web.set_page("/deals", hostile_fetch(sink.url))
    page = await fetcher.fetch(fake_web.url + "/deals")
    assert "20 percent off" in page.text
    assert "LEAKED" not in page.text
    assert await _settled(sink) == (0, 0)


async def test_images_frames_and_every_other_embed_of_a_private_address_get_nothing(
    fake_web: FakeWeb, fetcher: BrowserFetcher, sink: Sink
) -> None:
    fake_web.set_page("/gallery", hostile_embeds(sink.url))
    page = await fetcher.fetch(fake_web.url + "/gallery")
    assert "every colour" in page.text
    assert "internal secret" not in page.text
    # A screenshot loads images: still none from there.
    shot = await fetcher.fetch(fake_web.url + "/gallery", screenshot=True)
    assert shot.screenshot is not None
    assert await _settled(sink) == (0, 0)


async def test_a_redirect_to_a_private_address_is_refused(
    fake_web: FakeWeb, fetcher: BrowserFetcher, sink: Sink
) -> None:
    fake_web.redirect("/jump", sink.url + "/secret")
    with pytest.raises(FetchFailedError, match="refused by the outbound policy"):
        await fetcher.fetch(fake_web.url + "/jump")
    # The same redirect inside the page (a frame, a script's request) gets nothing either.
    fake_web.set_page(
        "/framed",
        "<html><body><article><h1>Framed</h1><p>A page with a frame.</p></article>"
        '<iframe src="/jump"></iframe><script>fetch("/jump").catch(() => {});</script>'
        "</body></html>",
    )
    page = await fetcher.fetch(fake_web.url + "/framed")
    assert "A page with a frame." in page.text
    assert await _settled(sink) == (0, 0)
    # The browser is still good for the next page.
    assert "A page with a frame." in (await fetcher.fetch(fake_web.url + "/framed")).text


async def test_a_private_address_typed_as_the_url_is_refused(
    fetcher: BrowserFetcher, sink: Sink
) -> None:
    with pytest.raises(FetchFailedError, match="refused by the outbound policy"):
        await fetcher.fetch(sink.url + "/secret")
    with pytest.raises(FetchFailedError, match="refused by the outbound policy"):
        await fetcher.fetch(f"http://2130706434:{sink.port}/secret")  # 127.0.0.2 in decimal
    assert await _settled(sink) == (0, 0)


async def test_a_websocket_to_a_private_address_is_closed_and_an_allowed_one_is_relayed(
    fake_web: FakeWeb, pool: BrowserPool, sink: Sink
) -> None:
    fetcher = browser_fetcher(pool, timeout=30.0)  # the relay's round trip, on a loaded machine
    with EchoWebSocket("127.0.0.1") as echo:
        fake_web.set_page("/live", hostile_websocket(sink.url, allowed=echo.url + "/echo"))
        # Read once both sockets have done their part (the page marks its article `settled`);
        # a relay that never answers leaves the selector missing and the read fails.
        page = await fetcher.fetch(fake_web.url + "/live", selector="article.settled")
        assert "The price feed is closed." in page.text
        assert "LEAKED" not in page.text
        assert "Relayed echo: ping" in page.text
        assert echo.messages == ["ping"]
    assert await _settled(sink) == (0, 0)


async def test_webrtc_sends_no_packet(
    fake_web: FakeWeb, fetcher: BrowserFetcher, sink: Sink
) -> None:
    fake_web.set_page("/call", hostile_webrtc(sink.url))
    page = await fetcher.fetch(fake_web.url + "/call")
    assert "nine to five" in page.text
    await asyncio.sleep(1.0)  # STUN would have been sent by now
    assert await _settled(sink) == (0, 0)
