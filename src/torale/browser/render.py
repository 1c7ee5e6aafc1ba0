"""Render one page: a fresh context, the guard on every request, a bounded wait, the DOM.

A render waits for the page's network to be idle (no request for 500 ms), or with a CSS or
XPath selector for that element to be in the page, and reads what is there when the wait ends
— at the latest when the fetch timeout is near: a page that never stops loading is read as it
stands. The page's whole render (navigation to screenshot) stays within the fetch timeout and
a short grace, the browser's own setup of a context and tab within SETUP_SECONDS; past those
the tab or the browser is taken as hung (closing the context tells which).

Steps before reading (clicking a cookie banner, typing in a search box) are not supported;
they would run in `_load` between the wait and the read, on the same page and deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torale.browser.guard import MAX_REDIRECTS, PageGuard
from torale.browser.pool import CLOSE_SECONDS, BrowserPool, BrowserUnavailableError, Lease
from torale.net import OutboundPolicy
from torale.watch.selectors import split_selector

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

logger = logging.getLogger("torale.browser")

GRACE_SECONDS = 5.0  # past the fetch timeout, a render that has not ended means a hung browser
# Making the context and its tab (a renderer process) is the browser's work, not the page's: it
# is not counted in the fetch timeout (a busy machine can take seconds), but bounded by this.
SETUP_SECONDS = 30.0
VIEWPORT = {"width": 1280, "height": 800}
MAX_SCREENSHOT_HEIGHT = 4 * VIEWPORT["height"]
_HTML_TYPES = ("text/html", "application/xhtml+xml")
# Page code that could reach the network around routing and the proxy: WebRTC (run before any
# script of every frame; a launched browser also has its UDP turned off).
_INIT_SCRIPT = """
for (const name of ["RTCPeerConnection", "webkitRTCPeerConnection", "RTCDataChannel",
                    "RTCIceCandidate", "RTCSessionDescription"]) {
  try { delete window[name]; } catch (e) {}
}
"""


class RenderFailedError(Exception):
    """The page could not be rendered; the message says why (shown on the run)."""


class _BrowserBrokeError(Exception):
    """The browser closed or stopped answering during a render."""


@dataclass(frozen=True, slots=True)
class Rendered:
    url: str  # where the page ended up, after redirects
    content_type: str
    body: bytes  # the rendered document as HTML; a document that is not HTML as served
    screenshot: bytes | None = None  # PNG


async def render(
    pool: BrowserPool,
    policy: OutboundPolicy,
    url: str,
    *,
    selector: str | None,
    screenshot: bool,
    seconds: float,
    max_bytes: int,
) -> Rendered:
    """Render `url` in a fresh context of the pool's browser. A browser that breaks during the
    render is restarted and the render tried once more on the new one, so a crash caused by
    another page does not fail this one. Raises RenderFailedError."""
    for attempt in (1, 2):
        try:
            async with pool.slot() as lease:
                try:
                    return await _render_in(
                        lease, pool, policy, url, selector, screenshot, seconds, max_bytes
                    )
                except _BrowserBrokeError as exc:
                    await pool.retire(lease.generation, str(exc))
                    if attempt == 2:
                        raise RenderFailedError(f"the browser failed: {exc}") from None
        except BrowserUnavailableError as exc:
            raise RenderFailedError(str(exc)) from None
    raise AssertionError("unreachable")


@dataclass
class _Opened:
    context: BrowserContext | None = None


async def _render_in(
    lease: Lease,
    pool: BrowserPool,
    policy: OutboundPolicy,
    url: str,
    selector: str | None,
    screenshot: bool,
    seconds: float,
    max_bytes: int,
) -> Rendered:
    """One attempt, watched: a browser that ends during it ends it at once (_BrowserBrokeError)
    instead of at the deadline."""
    from playwright.async_api import Error as PlaywrightError

    guard = PageGuard(policy, max_bytes=max_bytes, screenshot=screenshot)
    opened = _Opened()
    work = asyncio.ensure_future(
        _attempt(lease, pool, opened, guard, url, selector, screenshot, seconds)
    )
    watch = asyncio.ensure_future(_until_gone(lease, pool))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            raise _BrowserBrokeError("it closed")
        try:
            return work.result()
        except TimeoutError:
            # Playwright's own timeouts end before the deadline: the page's renderer (a script
            # that never yields) or the browser does not answer. Closing the context tells.
            closing, opened.context = opened.context, None
            if closing is not None and await _close(closing, guard):
                raise RenderFailedError(f"the page did not finish within {seconds:g} s") from None
            raise _BrowserBrokeError("it stopped answering") from None
        except PlaywrightError as exc:
            # "Target … closed" while we closed nothing: most likely the browser is gone, and
            # its end may take a moment to show (a large process exits slowly on a busy host).
            patience = CLOSE_SECONDS if "closed" in str(exc).lower() else 1.0
            if await _disconnected(lease, pool, patience):
                raise _BrowserBrokeError("it closed") from None
            raise RenderFailedError(_playwright_reason(exc)) from None
    finally:
        for task in (work, watch):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if not pool.alive(lease.generation):
            await guard.close()  # the context went with the browser
        elif not await _close(opened.context, guard):
            await pool.retire(lease.generation, "it did not close a page")


async def _attempt(
    lease: Lease,
    pool: BrowserPool,
    opened: _Opened,
    guard: PageGuard,
    url: str,
    selector: str | None,
    screenshot: bool,
    seconds: float,
) -> Rendered:
    async with asyncio.timeout(SETUP_SECONDS):
        context = opened.context = await lease.browser.new_context(**_context_options(pool))
        await context.add_init_script(_INIT_SCRIPT)
        await context.route("**/*", guard.handle)
        await context.route_web_socket("**/*", guard.handle_websocket)
        page = await context.new_page()
        guard.reads(page)
        context.on("page", _close_popup)  # pop-ups (after our page) are not what was asked
    deadline = asyncio.get_running_loop().time() + seconds
    guard.start(deadline)
    async with asyncio.timeout_at(deadline + GRACE_SECONDS):
        return await _load(page, guard, url, selector, screenshot, deadline, seconds)


async def _until_gone(lease: Lease, pool: BrowserPool) -> None:
    # Polled: the end of a process is not an event Playwright reliably reports (see pool).
    while pool.alive(lease.generation):  # noqa: ASYNC110
        await asyncio.sleep(0.25)


async def _disconnected(lease: Lease, pool: BrowserPool, patience: float) -> bool:
    """Whether the browser went away, within `patience` seconds: Playwright may report a
    closed page before the whole browser's end shows."""
    loop = asyncio.get_running_loop()
    until = loop.time() + patience
    while pool.alive(lease.generation):
        if loop.time() >= until:
            return False
        await asyncio.sleep(0.05)
    return True


def _context_options(pool: BrowserPool) -> dict[str, Any]:
    return {
        "viewport": VIEWPORT,
        "service_workers": "block",
        "accept_downloads": False,
        # A request that escapes routing meets a closed port (a launched browser has the same
        # proxy for the whole process).
        "proxy": {"server": pool.proxy},
    }


def _close_popup(page: Page) -> None:
    task = asyncio.get_running_loop().create_task(page.close())
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def _close(context: BrowserContext | None, guard: PageGuard) -> bool:
    """End the render's context (its pages, cookies, storage) and the guard's connections;
    False when the browser did not close the context within CLOSE_SECONDS (it is hung)."""
    await guard.close()
    if context is None:
        return True
    try:
        # (Not unroute_all first: it waits for the page, which may be what hangs.)
        async with asyncio.timeout(CLOSE_SECONDS):
            await context.close()
    except TimeoutError:
        return False
    except Exception as exc:
        logger.debug("closing a browser context: %s", type(exc).__name__)
    return True


async def _load(
    page: Page,
    guard: PageGuard,
    url: str,
    selector: str | None,
    screenshot: bool,
    deadline: float,
    seconds: float,
) -> Rendered:
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError

    crashed = asyncio.Event()
    page.on("crash", lambda _: crashed.set())
    target = url
    for _ in range(MAX_REDIRECTS + 1):
        guard.navigating_to(target)
        try:
            await page.goto(target, wait_until="domcontentloaded", timeout=_ms_until(deadline))
        except PlaywrightTimeoutError:
            raise RenderFailedError(f"no answer within {seconds:g} s") from None
        except PlaywrightError:
            if guard.redirect is not None:
                target = guard.redirect
                continue
            if crashed.is_set():
                raise RenderFailedError("the page crashed the browser tab") from None
            if guard.failure:
                raise RenderFailedError(guard.failure) from None
            raise  # _render_in tells a browser that went away from a page that failed
        break
    else:
        raise RenderFailedError(f"more than {MAX_REDIRECTS} redirects")
    document = guard.document
    if document is None:
        raise RenderFailedError(guard.failure or "the page sent no document")
    if document.status >= 400:
        raise RenderFailedError(f"HTTP {document.status}")
    media = document.content_type.split(";")[0].strip().lower()
    if media and media not in _HTML_TYPES:
        # JSON, text: nothing to render; read the document as it was served.
        return Rendered(document.url, document.content_type, document.body)

    loop = asyncio.get_running_loop()
    # Leave a fifth of the time (at least half a second) to read the page.
    reserve = max(0.5, seconds / 5)
    await _settle(page, selector, deadline - reserve)
    if crashed.is_set():
        raise RenderFailedError("the page crashed the browser tab")
    html = await _content(page, deadline)
    shot = None
    if screenshot:
        shot = await _screenshot(page, max(deadline, loop.time() + reserve))
    if crashed.is_set():
        raise RenderFailedError("the page crashed the browser tab")
    return Rendered(page.url, "text/html; charset=utf-8", html.encode(), shot)


async def _settle(page: Page, selector: str | None, until: float) -> None:
    """Wait for the selected element, or for the network to be idle, until `until` at most."""
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError

    ms = _ms_until(until)
    if ms <= 1:
        return
    kind, expression = split_selector(selector) if selector else ("json", "")
    try:
        if kind == "css":
            await page.wait_for_selector(f"css={expression}", state="attached", timeout=ms)
        elif kind == "xpath":
            await page.wait_for_selector(f"xpath={expression}", state="attached", timeout=ms)
        else:
            await page.wait_for_load_state("networkidle", timeout=ms)
    except PlaywrightTimeoutError:
        pass  # read the page as it stands (a selector still missing fails the read)


async def _content(page: Page, deadline: float) -> str:
    """The page's DOM as HTML (waiting once for a navigation the page started itself)."""
    from playwright.async_api import Error as PlaywrightError

    try:
        return await page.content()
    except PlaywrightError as exc:
        if "navigating" not in str(exc):
            raise
    with contextlib.suppress(PlaywrightError):
        await page.wait_for_load_state("domcontentloaded", timeout=max(_ms_until(deadline), 1))
    return await page.content()


async def _screenshot(page: Page, until: float) -> bytes:
    """A PNG of the page from its top: the whole page, at most MAX_SCREENSHOT_HEIGHT high."""
    height = await page.evaluate("() => document.documentElement.scrollHeight")
    clip = None
    if isinstance(height, int | float) and height > MAX_SCREENSHOT_HEIGHT:
        clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": MAX_SCREENSHOT_HEIGHT}
    return await page.screenshot(
        type="png",
        full_page=True,
        clip=clip,  # type: ignore[arg-type]
        animations="disabled",
        caret="hide",
        timeout=max(_ms_until(until), 1),
    )


def _ms_until(moment: float) -> float:
    return max((moment - asyncio.get_running_loop().time()) * 1000, 0.0)


def _playwright_reason(exc: Exception) -> str:
    """A short reason from a Playwright error: its first line, without the call log."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # "Page.goto: net::ERR_NAME_NOT_RESOLVED at https://…": the reason, not the URL.
    reason = first.split(": ", 1)[-1].split(" at http", 1)[0]
    return reason[:200]
