"""The outbound policy inside the browser: every request a page makes is made by Torale.

A render's context routes every request (`context.route("**/*")`) to `PageGuard.handle`, which
sends it with the guarded httpx client of `torale.net` — the host resolved once, every address
checked, the socket connected to the checked address, every redirect hop checked again — and
answers the browser with what came back (`route.fulfill`). Refused, failed and over-budget
requests are aborted. The browser itself never opens a connection for a page: the document,
its frames, scripts, XHR/fetch, beacons, workers' requests alike. WebSockets are routed too
(`context.route_web_socket`) and relayed by Torale over a socket `net.connect_checked` opened.

What routing cannot see is closed by the browser's setup (`pool`): its proxy is a closed port
on the loopback (a request that escapes routing fails), WebRTC sends no UDP, and service
workers are blocked in every context. Downloads are refused here, before the browser sees one.

Redirects: the browser does not re-route a redirect it is answered with, so the guard follows
them itself (checking each hop). For the page's own document that would leave the page at the
first URL, so the guard keeps the final answer, aborts, and the render navigates to the final
URL, which the guard then answers from what it kept (`redirect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from torale.net import (
    OutboundPolicy,
    ResponseTooLargeError,
    UnsafeURLError,
    connect_checked,
    default_tls,
    guarded_client,
    read_limited,
)

if TYPE_CHECKING:
    from playwright.async_api import Frame, Page, Request, Route, WebSocketRoute
    from websockets.asyncio.client import ClientConnection

logger = logging.getLogger("torale.browser")

MAX_REDIRECTS = 5
# A page's requests, and the bytes of all its answers together, are bounded per render.
MAX_REQUESTS = 300
TOTAL_BYTES_FACTOR = 5  # times the largest page (TORALE_FETCH_MAX_BYTES)
# Not needed to read a page; images and fonts are loaded only for a screenshot. Event streams
# never end, so they cannot be answered whole; pings are analytics beacons.
_ALWAYS_BLOCKED = frozenset({"media", "eventsource", "ping"})
_SCREENSHOT_ONLY = frozenset({"image", "font"})
# Request headers the browser sets for its own connection, or that httpx sets for Torale's.
_REQUEST_DROP = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "accept-encoding",  # httpx asks for what it can decode, and decodes it
    }
)
# Response headers that describe the bytes on the wire; the browser is given the decoded body.
_RESPONSE_DROP = frozenset(
    {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"}
)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a server answered one of the page's requests (after redirects)."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def is_download(self) -> bool:
        return self.headers.get("content-disposition", "").strip().lower().startswith("attachment")


class PageGuard:
    """Makes the requests of one render, under the outbound policy and the render's limits.

    One guard per render: its httpx client (and so its cookie jar) is the render's only.
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        max_bytes: int,
        screenshot: bool,
    ) -> None:
        self._policy = policy
        # Event-loop time after which nothing more is fetched (`start`).
        self._deadline = asyncio.get_running_loop().time()
        self._max_bytes = max_bytes
        self._budget = max_bytes * TOTAL_BYTES_FACTOR
        self._blocked = _ALWAYS_BLOCKED if screenshot else _ALWAYS_BLOCKED | _SCREENSHOT_ONLY
        self._client = guarded_client(policy, timeout=30.0, max_redirects=MAX_REDIRECTS)
        self._navigating: str | None = None
        self._frame: Frame | None = None
        self._kept: Answer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sockets: set[ClientConnection] = set()
        self._closed = False
        self.requests = 0
        self.refused = 0
        self.received = 0
        # The page's document as last answered (what the render reads when it is not HTML),
        # why it could not be fetched, and where it redirected to.
        self.document: Answer | None = None
        self.failure: str | None = None
        self.redirect: str | None = None

    def start(self, deadline: float) -> None:
        """The page is about to load: its requests are made until `deadline` (loop time)."""
        self._deadline = deadline

    def reads(self, page: Page) -> None:
        """`page` is the render's page: its main frame's documents are the ones it reads (a
        pop-up's, or a frame's, are only answered)."""
        self._frame = page.main_frame

    def navigating_to(self, url: str) -> None:
        """The render is about to navigate the page to `url` (see the module's "Redirects")."""
        self._navigating = url
        self.redirect = None
        self.failure = None

    # --- HTTP ----------------------------------------------------------------------------

    async def handle(self, route: Route) -> None:
        """The context's route handler: every request of every page and frame."""
        try:
            await self._handle(route)
        except Exception as exc:
            # The page or its context closed while the answer was on its way (a render
            # that ended): nothing is left to answer. Anything else must not leak either.
            if not _closed(exc):
                logger.warning("browser request not handled: %s", type(exc).__name__)
            with contextlib.suppress(Exception):
                await route.abort("failed")

    async def _handle(self, route: Route) -> None:
        request = route.request
        if request.resource_type in self._blocked or urlsplit(request.url).scheme not in (
            "http",
            "https",
        ):
            await route.abort("blockedbyclient")
            return
        document = request.is_navigation_request() and self._is_read_frame(request)
        if document and self._kept is not None and self._kept.url == request.url:
            # The end of the redirects followed for this navigation.
            answer, self._kept = self._kept, None
        else:
            self.requests += 1
            if self.requests > MAX_REQUESTS or self.received >= self._budget:
                await route.abort("blockedbyclient")
                return
            try:
                answer = await self._fetch(request)
            except UnsafeURLError as exc:
                self.refused += 1
                logger.info("browser request refused: %s", exc.detail)
                if document:
                    self.failure = exc.refusal
                await route.abort("blockedbyclient")
                return
            except ResponseTooLargeError:
                if document:
                    self.failure = f"larger than {self._max_bytes} bytes"
                await route.abort("failed")
                return
            except TimeoutError:
                await route.abort("timedout")
                return
            except httpx.HTTPError as exc:
                if document:
                    self.failure = type(exc).__name__
                await route.abort("failed")
                return
        if request.is_navigation_request() and answer.is_download:
            if document:
                self.failure = "the page is a download, not a page"
            await route.abort("blockedbyclient")
            return
        if document:
            if answer.url != request.url and request.url == self._navigating:
                self._kept, self.redirect = answer, answer.url
                await route.abort("aborted")
                return
            self.document = answer
        await route.fulfill(status=answer.status, headers=answer.headers, body=answer.body)

    def _is_read_frame(self, request: Request) -> bool:
        try:
            return self._frame is not None and request.frame == self._frame
        except Exception:  # a service worker's request has no frame (and they are blocked)
            return False

    async def _fetch(self, request: Request) -> Answer:
        headers = {
            name: value
            for name, value in (await request.all_headers()).items()
            if name.lower() not in _REQUEST_DROP and not name.startswith(":")
        }
        limit = min(self._max_bytes, self._budget - self.received)
        async with (
            asyncio.timeout_at(self._deadline),
            self._client.stream(
                request.method, request.url, headers=headers, content=request.post_data_buffer
            ) as response,
        ):
            body = await read_limited(response, limit)
        self.received += len(body)
        kept: dict[str, str] = {}
        for name, value in response.headers.multi_items():
            if name in _RESPONSE_DROP:
                continue
            # Playwright takes several Set-Cookie values on separate lines.
            joiner = "\n" if name == "set-cookie" else ", "
            kept[name] = f"{kept[name]}{joiner}{value}" if name in kept else value
        return Answer(str(response.url), response.status_code, kept, body)

    # --- WebSockets ----------------------------------------------------------------------

    async def handle_websocket(self, ws: WebSocketRoute) -> None:
        """The context's WebSocket route: relayed over a checked connection, or closed."""
        try:
            server = await self._connect(ws.url, ws.protocols)
        except UnsafeURLError as exc:
            self.refused += 1
            logger.info("browser WebSocket refused: %s", exc.detail)
            await ws.close(code=1008, reason="refused by the outbound policy")
            return
        except Exception as exc:
            logger.info("browser WebSocket failed: %s", type(exc).__name__)
            await ws.close(code=1011, reason="could not connect")
            return
        self._sockets.add(server)
        ws.on_message(lambda message: self._spawn(server.send(message)))
        ws.on_close(lambda code, reason: self._spawn(server.close()))
        self._spawn(self._from_server(ws, server))

    async def _connect(self, url: str, protocols: list[str]) -> ClientConnection:
        from websockets.asyncio.client import connect
        from websockets.typing import Subprotocol

        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        # The policy judges a WebSocket as the page it would be over HTTP.
        self._policy.check_url(("https" if secure else "http") + url[len(parts.scheme) :])
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        remaining = max(self._deadline - asyncio.get_running_loop().time(), 0.0)
        sock = await connect_checked(self._policy, host, port, within=remaining)
        try:
            return await connect(
                url,
                sock=sock,
                ssl=default_tls() if secure else None,
                server_hostname=host if secure else None,
                subprotocols=[Subprotocol(p) for p in protocols] or None,
                proxy=None,  # never an environment proxy: the socket is the checked one
                open_timeout=max(remaining, 0.1),
                max_size=self._max_bytes,
            )
        except BaseException:
            sock.close()
            raise

    async def _from_server(self, ws: WebSocketRoute, server: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for message in server:
                ws.send(message)
        with contextlib.suppress(Exception):
            await ws.close()

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("browser WebSocket relay ended: %r", task.exception())

    async def close(self) -> None:
        """End what the render left: relays, server sockets, the client's connections."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for server in list(self._sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.close(), 1.0)
        self._sockets.clear()
        await self._client.aclose()


def _closed(exc: Exception) -> bool:
    """Whether `exc` says the page, context or browser went away."""
    text = str(exc).lower()
    return any(word in text for word in ("closed", "crashed", "disconnected", "detached"))
