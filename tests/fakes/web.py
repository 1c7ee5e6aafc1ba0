"""A fake website whose pages change between runs, with real HTTP caching semantics.

Pages carry an ETag (hash of the body) and a Last-Modified date (moved on, strictly later, each
time the body changes) and answer ``If-None-Match`` / ``If-Modified-Since`` with 304.
"""

from __future__ import annotations

import asyncio
import hashlib
import html as html_lib
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from .server import Failure, FakeService

__all__ = ["FakeWeb", "article_html"]

HTML = "text/html; charset=utf-8"


def article_html(
    title: str,
    paragraphs: Sequence[str],
    *,
    nav_noise: str = "",
    published: str = "2025-01-15",
) -> str:
    """A realistic news page: the story sits in <article>, the rest is boilerplate.

    `nav_noise` is placed in the nav, aside, footer and a script (never in the article), so two
    pages that differ only by it have the same readable text.
    """
    esc = html_lib.escape
    body = "\n".join(f"      <p>{esc(p)}</p>" for p in paragraphs)
    noise = esc(nav_noise)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{esc(title)} | Example News</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="description" content="{esc(paragraphs[0] if paragraphs else title)}">
  <meta property="og:title" content="{esc(title)}">
  <link rel="stylesheet" href="/static/site.css">
  <script>window.dataLayer = window.dataLayer || []; window.__session = "{noise}";</script>
</head>
<body>
  <header class="site-header">
    <nav class="main-nav">
      <a href="/">Home</a> <a href="/world">World</a> <a href="/tech">Technology</a>
      <a href="/login">Sign in</a> <span class="session">{noise}</span>
    </nav>
  </header>
  <main>
    <article class="story">
      <h1>{esc(title)}</h1>
      <p class="byline">By Staff Reporter, <time datetime="{published}">{published}</time></p>
{body}
    </article>
    <aside class="related">
      <h2>Most read</h2>
      <ul>
        <li><a href="/a">Ten gadgets you will not believe</a></li>
        <li><a href="/b">Weather outlook for the weekend</a></li>
        <li><span class="trending">{noise}</span></li>
      </ul>
    </aside>
  </main>
  <footer class="site-footer">
    <p>&copy; 2025 Example News. All rights reserved. {noise}</p>
    <a href="/privacy">Privacy</a> <a href="/terms">Terms</a>
  </footer>
  <script src="/static/analytics.js"></script>
  <script>track("pageview", "{noise}");</script>
</body>
</html>
"""


@dataclass
class _Page:
    body: bytes
    content_type: str
    status: int
    etag: str | None
    last_modified: float | None
    headers: dict[str, str]
    noise: bool | None


@dataclass
class _Redirect:
    location: str
    status: int


@dataclass
class _Big:
    size: int
    content_type: str
    declare_length: bool
    chunk_size: int


@dataclass
class _Slow:
    seconds: float
    trickle: bool


@dataclass
class _Stats:
    hits: Counter[str] = field(default_factory=Counter)
    not_modified: Counter[str] = field(default_factory=Counter)


_NAV_OPEN = re.compile(rb"<nav\b[^>]*>", re.IGNORECASE)
_FOOTER_CLOSE = re.compile(rb"</footer\s*>", re.IGNORECASE)


def _http_date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(int(timestamp), UTC), usegmt=True)


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(","))


class FakeWeb(FakeService):
    """Serves configured paths (GET/HEAD); unknown paths are 404. Matching ignores the query.

    `noise=True` (default for all pages, or per page in `set_page`) injects a fresh session id
    and timestamp into the first <nav> and the <footer> of every response. Noisy pages are
    dynamic: they carry no ETag/Last-Modified and never answer 304.
    """

    def __init__(self, *, noise: bool = False, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self._initial_noise = noise
        self.noise = noise
        self._routes: dict[str, _Page | _Redirect | _Big] = {}
        self._slow: dict[str, _Slow] = {}
        self._stats = _Stats()
        self._clock = 0

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._serve, methods=["GET", "HEAD"])])

    # -- configuration ---------------------------------------------------------------------
    def set_page(
        self,
        path: str,
        html: str | bytes,
        *,
        content_type: str = HTML,
        etag: bool | str = True,
        last_modified: bool | datetime = True,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        noise: bool | None = None,
    ) -> None:
        """Serve `html` at `path` (replacing whatever was there).

        The ETag is a hash of the body unless given; Last-Modified stays put when the body is
        unchanged and otherwise moves to a second strictly later than any earlier one.
        """
        body = html.encode() if isinstance(html, str) else html
        with self._lock:
            previous = self._routes.get(path)
            tag: str | None = None
            if etag is True:
                tag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
            elif isinstance(etag, str):
                tag = etag if etag.endswith('"') else f'"{etag}"'
            modified: float | None = None
            if isinstance(last_modified, datetime):
                modified = last_modified.timestamp()
            elif last_modified:
                if (
                    isinstance(previous, _Page)
                    and previous.body == body
                    and previous.last_modified is not None
                ):
                    modified = previous.last_modified
                else:
                    self._clock = max(int(time.time()), self._clock + 1)
                    modified = float(self._clock)
            self._routes[path] = _Page(
                body, content_type, status, tag, modified, dict(headers or {}), noise
            )

    def remove(self, path: str) -> None:
        """Make `path` a 404 again."""
        with self._lock:
            self._routes.pop(path, None)
            self._slow.pop(path, None)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer `path` with a redirect to `location` (a path or an absolute URL)."""
        with self._lock:
            self._routes[path] = _Redirect(location, status)

    def slow(self, path: str, seconds: float, *, trickle: bool = False) -> None:
        """Delay `path` by `seconds`: before the headers, or (`trickle`) spread over the body."""
        with self._lock:
            if seconds > 0:
                self._slow[path] = _Slow(seconds, trickle)
            else:
                self._slow.pop(path, None)

    def big(
        self,
        path: str,
        n_bytes: int,
        *,
        content_type: str = HTML,
        declare_length: bool = True,
        chunk_size: int = 64 * 1024,
    ) -> None:
        """Stream an HTML body of exactly `n_bytes` (chunked when not `declare_length`)."""
        with self._lock:
            self._routes[path] = _Big(n_bytes, content_type, declare_length, chunk_size)

    def reset(self) -> None:
        """Forget pages, counters, failures and delays."""
        super().reset()
        with self._lock:
            self._routes.clear()
            self._slow.clear()
            self._stats = _Stats()
            self.noise = self._initial_noise

    # -- observation -----------------------------------------------------------------------
    def count(self, path: str) -> int:
        """Requests received for `path` (any status, including 304s)."""
        with self._lock:
            return self._stats.hits[path]

    def count_304(self, path: str) -> int:
        """304 Not Modified answers given for `path`."""
        with self._lock:
            return self._stats.not_modified[path]

    def etag(self, path: str) -> str | None:
        with self._lock:
            page = self._routes.get(path)
            return page.etag if isinstance(page, _Page) else None

    # -- protocol --------------------------------------------------------------------------
    def error_response(self, failure: Failure) -> Response:
        if failure.body is not None:
            return super().error_response(failure)
        return HTMLResponse(
            f"<html><body><h1>Error {failure.status}</h1></body></html>",
            failure.status,
            headers=self._failure_headers(failure),
        )

    async def _serve(self, request: Request) -> Response:
        record, failure = await self._admit(request)
        path = record.path
        with self._lock:
            self._stats.hits[path] += 1
            route = self._routes.get(path)
            slow = self._slow.get(path)
            default_noise = self.noise
        if failure is not None:
            return self.error_response(failure)
        if slow is not None and not slow.trickle:
            await asyncio.sleep(slow.seconds)
        trickle = slow.seconds if slow is not None and slow.trickle else 0.0

        if route is None:
            return HTMLResponse("<html><body><h1>Not Found</h1></body></html>", 404)
        if isinstance(route, _Redirect):
            return Response(
                f"Redirecting to {route.location}",
                route.status,
                headers={"location": route.location},
                media_type="text/plain",
            )
        if isinstance(route, _Big):
            return self._big_response(route, trickle)

        noisy = default_noise if route.noise is None else route.noise
        headers = dict(route.headers)
        if not noisy and route.status == 200:
            if route.etag is not None:
                headers["etag"] = route.etag
            if route.last_modified is not None:
                headers["last-modified"] = _http_date(route.last_modified)
            headers.setdefault("cache-control", "no-cache")
            if self._not_modified(record.headers, route):
                with self._lock:
                    self._stats.not_modified[path] += 1
                return Response(status_code=304, headers=headers)
        body = self._with_noise(route.body) if noisy else route.body
        if trickle:
            return _trickled(body, route.status, route.content_type, headers, trickle)
        return Response(body, route.status, headers=headers, media_type=route.content_type)

    @staticmethod
    def _not_modified(request_headers: Mapping[str, str], page: _Page) -> bool:
        inm = request_headers.get("if-none-match")
        if inm is not None:  # RFC 9110 13.2.2: If-None-Match wins over If-Modified-Since
            return page.etag is not None and _etag_matches(inm, page.etag)
        ims = request_headers.get("if-modified-since")
        if ims is None or page.last_modified is None:
            return False
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return int(page.last_modified) <= since.timestamp()

    def _with_noise(self, body: bytes) -> bytes:
        stamp = datetime.now(UTC).isoformat(timespec="microseconds")
        span = f'<span class="noise">session={uuid.uuid4().hex} served={stamp}</span>'.encode()
        body = _NAV_OPEN.sub(lambda m: m.group(0) + span, body, count=1)
        return _FOOTER_CLOSE.sub(lambda m: span + m.group(0), body, count=1)

    @staticmethod
    def _big_response(big: _Big, trickle: float) -> Response:
        prefix, suffix = b"<!DOCTYPE html><html><body><p>", b"</p></body></html>"
        if big.size < len(prefix) + len(suffix):
            prefix, suffix = b"", b""
        filler = big.size - len(prefix) - len(suffix)
        pieces = max(1, -(-big.size // big.chunk_size))

        async def chunks() -> AsyncIterator[bytes]:
            yield prefix
            remaining = filler
            line = b"lorem ipsum dolor sit amet " * (big.chunk_size // 27 + 1)
            while remaining > 0:
                n = min(remaining, big.chunk_size)
                yield line[:n]
                remaining -= n
                if trickle:
                    await asyncio.sleep(trickle / pieces)
            yield suffix

        headers = {"content-length": str(big.size)} if big.declare_length else {}
        return StreamingResponse(chunks(), 200, headers=headers, media_type=big.content_type)


def _trickled(
    body: bytes, status: int, content_type: str, headers: dict[str, str], seconds: float
) -> Response:
    pieces = 10
    step = max(1, -(-len(body) // pieces))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, max(len(body), 1), step):
            await asyncio.sleep(seconds / pieces)
            yield body[start : start + step]

    headers = {**headers, "content-length": str(len(body))}
    return StreamingResponse(chunks(), status, headers=headers, media_type=content_type)
