"""The browser reads what JavaScript writes, through the same reading as a plain page."""

from __future__ import annotations

import pytest

from tests.fakes import FakeWeb
from tests.fixtures.browser import POLICY, api_page, js_page
from torale.browser.fetcher import BrowserFetcher
from torale.engine.fetch import Fetcher, FetchFailedError, SelectorMissedError

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

STORY = ["The espresso machine is back in stock.", "It costs 499 euros, delivered in two days."]


async def test_the_browser_reads_what_javascript_writes_and_the_plain_fetcher_does_not(
    fake_web: FakeWeb, fetcher: BrowserFetcher
) -> None:
    fake_web.set_page("/shop", js_page("Espresso machine", STORY))
    url = fake_web.url + "/shop"
    plain = Fetcher(POLICY, timeout=5, max_bytes=2_000_000, max_chars=8_000)
    try:
        seen_plain = await plain.fetch(url)
    finally:
        await plain.close()
    assert "back in stock" not in seen_plain.text

    page = await fetcher.fetch(url)
    assert "The espresso machine is back in stock." in page.text
    assert "499 euros" in page.text
    assert page.rendered
    assert page.screenshot is None
    assert page.etag is None


async def test_a_single_page_app_fetches_its_data_through_the_guard(
    fake_web: FakeWeb, fetcher: BrowserFetcher
) -> None:
    fake_web.set_page("/app", api_page("/api/item"))
    fake_web.set_page(
        "/api/item",
        '{"name": "Espresso machine", "price": "499 EUR", "stock": "In stock"}',
        content_type="application/json",
    )
    page = await fetcher.fetch(fake_web.url + "/app", selector="#price")
    assert page.text == "Price: 499 EUR"
    assert fake_web.count("/api/item") == 1


async def test_a_selector_is_waited_for(fake_web: FakeWeb, fetcher: BrowserFetcher) -> None:
    # Written after 1.5 s: the network is idle long before, so only the selector waits for it.
    fake_web.set_page("/late", js_page("Late", STORY, delay_ms=1500, element_id="story"))
    page = await fetcher.fetch(fake_web.url + "/late", selector="xpath://article[@id='story']/p[2]")
    assert page.text == "It costs 499 euros, delivered in two days."


async def test_a_selector_that_never_appears_fails_as_a_plain_one(
    fake_web: FakeWeb, fetcher: BrowserFetcher
) -> None:
    fake_web.set_page("/shop", js_page("Espresso machine", STORY))
    with pytest.raises(SelectorMissedError):
        await fetcher.fetch(fake_web.url + "/shop", selector="#nothing-here")


async def test_a_json_document_is_read_as_served(
    fake_web: FakeWeb, fetcher: BrowserFetcher
) -> None:
    fake_web.set_page("/api", '{"items": [{"price": 12.5}]}', content_type="application/json")
    page = await fetcher.fetch(fake_web.url + "/api", selector="json:$.items[0].price")
    assert page.text == "12.5"


async def test_redirects_are_followed_and_the_page_ends_where_they_lead(
    fake_web: FakeWeb, fetcher: BrowserFetcher
) -> None:
    # The script is relative: it loads only if the page knows it is at /new/page.
    fake_web.redirect("/old", "/new/page")
    fake_web.set_page(
        "/new/page",
        '<html><body><main id="app"></main><script src="app.js"></script></body></html>',
    )
    fake_web.set_page(
        "/new/app.js",
        'document.getElementById("app").innerHTML = '
        '"<article><h1>Moved</h1><p>The shop moved to a new address.</p></article>";',
        content_type="text/javascript",
    )
    page = await fetcher.fetch(fake_web.url + "/old")
    assert "The shop moved to a new address." in page.text
    assert fake_web.count("/new/page") == 1  # answered from the redirect followed, not again


async def test_an_error_status_fails_the_page(fake_web: FakeWeb, fetcher: BrowserFetcher) -> None:
    with pytest.raises(FetchFailedError, match="HTTP 404"):
        await fetcher.fetch(fake_web.url + "/missing")


async def test_a_download_is_refused(fake_web: FakeWeb, fetcher: BrowserFetcher) -> None:
    fake_web.set_page(
        "/report",
        b"%PDF-1.4 not a page",
        content_type="application/pdf",
        headers={"content-disposition": 'attachment; filename="report.pdf"'},
    )
    with pytest.raises(FetchFailedError, match="download"):
        await fetcher.fetch(fake_web.url + "/report")


async def test_images_and_fonts_load_only_for_a_screenshot(
    fake_web: FakeWeb, fetcher: BrowserFetcher
) -> None:
    fake_web.set_page(
        "/pictures",
        "<html><head><style>@font-face { font-family: F; src: url(/font.woff2); }"
        " body { font-family: F; }</style></head><body><article><h1>Pictures</h1>"
        '<p>A photo of the machine.</p><img src="/photo.png" alt=""></article></body></html>',
    )
    fake_web.set_page("/photo.png", _PNG, content_type="image/png")
    fake_web.set_page("/font.woff2", b"not really a font", content_type="font/woff2")
    page = await fetcher.fetch(fake_web.url + "/pictures")
    assert page.screenshot is None
    assert fake_web.count("/photo.png") == 0
    assert fake_web.count("/font.woff2") == 0

    shot = await fetcher.fetch(fake_web.url + "/pictures", screenshot=True)
    assert shot.text == page.text
    assert shot.screenshot is not None
    assert shot.screenshot.startswith(b"\x89PNG\r\n\x1a\n")
    assert fake_web.count("/photo.png") == 1


async def test_cookies_a_page_sets_stay_in_its_render(
    fake_web: FakeWeb, fetcher: BrowserFetcher
) -> None:
    fake_web.set_page(
        "/login",
        '<html><body><main id="app"></main><script>'
        'fetch("/whoami").then(r => r.text()).then(t => {'
        ' document.getElementById("app").innerHTML = "<article><h1>Account</h1><p>" + t +'
        ' "</p></article>"; });</script></body></html>',
        headers={"set-cookie": "session=abc123; Path=/"},
        etag=False,
        last_modified=False,
    )
    fake_web.set_page("/whoami", "Signed in with a session cookie.", content_type="text/plain")
    page = await fetcher.fetch(fake_web.url + "/login")
    assert "Signed in with a session cookie." in page.text
    asked = [r for r in fake_web.requests if r.path == "/whoami"]
    assert asked[-1].headers.get("cookie") == "session=abc123"

    # A second render is a new context: it starts without the first one's cookie.
    await fetcher.fetch(fake_web.url + "/login")
    logins = [r for r in fake_web.requests if r.path == "/login"]
    assert len(logins) == 2
    assert all("cookie" not in r.headers for r in logins)


_PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99"
    b"=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)


async def test_a_pop_up_is_not_what_is_read(fake_web: FakeWeb, fetcher: BrowserFetcher) -> None:
    fake_web.set_page(
        "/opener",
        "<html><body><article><h1>Shop</h1><p>The machine is in stock.</p></article>"
        '<script>window.open("/missing"); window.open("/ad");</script></body></html>',
    )
    fake_web.set_page("/ad", "<html><body><p>Buy something else.</p></body></html>")
    page = await fetcher.fetch(fake_web.url + "/opener")
    assert "The machine is in stock." in page.text
    assert "something else" not in page.text
