"""Fetch pages and extract their readable text, within the outbound policy of `torale.net`.

Every request goes through the guarded client (addresses checked after DNS and on every
redirect), with a time limit and a size limit. Pages fetched before are asked for
conditionally (If-None-Match / If-Modified-Since); a 304 reuses the text kept in `pages`, and so
does a 200 whose body is byte for byte the one that text was read from (many servers send no
validators): extraction is most of a check's CPU. Readable text comes from trafilatura, so
navigation, footers and scripts — where session ids and timestamps live — do not make an
unchanged article look changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from torale import __version__
from torale.inputs import clean_text
from torale.net import (
    OutboundPolicy,
    ResponseTooLargeError,
    UnsafeURLError,
    guarded_client,
    read_limited,
)
from torale.watch.selectors import SelectorMissError, select_text

logger = logging.getLogger("torale.engine.fetch")
USER_AGENT = f"Torale/{__version__} (self-hosted web monitor)"
_TEXT_TYPES = ("text/plain", "application/json", "text/markdown", "text/csv")


@dataclass(frozen=True, slots=True)
class FetchedPage:
    url: str  # as asked for
    title: str
    text: str
    text_hash: str
    etag: str | None
    last_modified: str | None
    not_modified: bool  # answered 304: the text is the cached one
    selector: str | None = None  # the part of the page `text` is (None: its readable text)
    body_hash: str | None = None  # `body_hash` of what `text` was read from (None: unknown)
    # Read by the browser (torale.browser): not kept in the page cache, which serves
    # conditional requests of the plain fetcher. `screenshot`: a PNG of it, when asked for.
    rendered: bool = False
    screenshot: bytes | None = None
    # The page cache's entry (`cached`) is this page already: recording it would write the
    # same row again (a 304 or the same bytes, with the same validators).
    cache_current: bool = False

    @property
    def cache_key(self) -> str:
        """The page cache's key: the URL, and the selector when only a part is read."""
        return self.url if self.selector is None else f"{self.url}\n{self.selector}"


@dataclass(frozen=True, slots=True)
class CachedPage:
    title: str
    text: str
    text_hash: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None = None


def _same_validators(cached: CachedPage, etag: str | None, last_modified: str | None) -> bool:
    return cached.etag == etag and cached.last_modified == last_modified


class FetchFailedError(Exception):
    """This page could not be read (the run goes on with the others)."""


class SelectorMissedError(FetchFailedError):
    """The page was read, but the target's selector matched nothing in it (the run fails)."""


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def body_hash(body: bytes, content_type: str) -> str:
    """What a text was read from: the media type (it decides how) and the body's bytes."""
    media = content_type.split(";")[0].strip().lower()
    return hashlib.sha256(media.encode() + b"\n" + body).hexdigest()


def _title(tree: Any) -> str:
    """The title trafilatura's metadata would give (meta tags, JSON-LD, then <title> or <h1>),
    without the rest of its metadata: dates, authors and categories were about half of the
    extraction's CPU, and a run uses none of them."""
    from trafilatura.metadata import examine_meta, extract_meta_json, extract_title

    metadata = examine_meta(tree)
    try:
        metadata = extract_meta_json(tree, metadata)
    except Exception:  # trafilatura guards it so too: a page's broken JSON-LD
        logger.debug("unreadable JSON-LD metadata", exc_info=True)
    return str(metadata.title or extract_title(tree) or "")


def extract_text(body: bytes, content_type: str, url: str) -> tuple[str, str]:
    """(title, readable text) of a response body. CPU work: call it in a thread."""
    import trafilatura  # large (lxml and its models): loaded on the first page read

    media = content_type.split(";")[0].strip().lower()
    if media in _TEXT_TYPES or media.startswith("text/plain"):
        return "", body.decode("utf-8", errors="replace")
    if media not in ("text/html", "application/xhtml+xml", ""):
        raise FetchFailedError(f"unsupported content type {media}")
    tree = trafilatura.load_html(body)
    title, text = "", ""
    if tree is not None:
        title = _title(tree)
        document = trafilatura.bare_extraction(  # works on a copy of the tree
            tree, url=url, with_metadata=False, include_comments=False, include_tables=True
        )
        text = str(getattr(document, "text", "") or "")
    if not text.strip():
        text = trafilatura.html2txt(body) or ""
    return title, text


async def read_text(
    body: bytes, content_type: str, url: str, *, selector: str | None, max_chars: int
) -> tuple[str, str]:
    """(title, text) of a page as runs read it, however it was fetched: its readable text, or
    with `selector` only the part it selects (SelectorMissedError when that is nothing), at most
    `max_chars`. The plain fetcher and the browser (`torale.browser`) both read pages here."""
    if selector is None:
        title, text = await asyncio.to_thread(extract_text, body, content_type, url)
    else:
        title = ""
        try:
            text = await asyncio.to_thread(select_text, body, content_type, selector)
        except SelectorMissError as exc:
            raise SelectorMissedError(str(exc)) from None
    # Pages are stored and judged as text: NUL characters (PostgreSQL cannot store them)
    # and lone surrogates go here, before anything else sees the text.
    text = " ".join(clean_text(text).split(" ")).strip()[:max_chars]
    return clean_text(title), text


class Fetcher:
    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        timeout: float,
        max_bytes: int,
        max_chars: int,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_chars = max_chars
        self.client = guarded_client(policy, timeout=timeout, headers={"User-Agent": USER_AGENT})

    async def fetch(
        self, url: str, cached: CachedPage | None = None, *, selector: str | None = None
    ) -> FetchedPage:
        """The page at `url` (with `selector`: only the part it selects); FetchFailedError
        (with a short reason) when it cannot be read, SelectorMissedError when the selector
        matches nothing. `cached` must be the entry of the same URL and selector."""
        headers = {}
        if cached is not None:
            if cached.etag:
                headers["If-None-Match"] = cached.etag
            if cached.last_modified:
                headers["If-Modified-Since"] = cached.last_modified
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.stream("GET", url, headers=headers) as response:
                    if response.status_code == 304 and cached is not None:
                        etag = response.headers.get("etag", cached.etag)
                        last_modified = response.headers.get("last-modified", cached.last_modified)
                        return FetchedPage(
                            url=url,
                            title=cached.title,
                            text=cached.text,
                            text_hash=cached.text_hash,
                            etag=etag,
                            last_modified=last_modified,
                            not_modified=True,
                            selector=selector,
                            body_hash=cached.body_hash,
                            cache_current=_same_validators(cached, etag, last_modified),
                        )
                    if response.status_code >= 400:
                        raise FetchFailedError(f"HTTP {response.status_code}")
                    body = await read_limited(response, self.max_bytes)
                    content_type = response.headers.get("content-type", "")
                    etag = response.headers.get("etag")
                    last_modified = response.headers.get("last-modified")
        except UnsafeURLError as exc:
            raise FetchFailedError(exc.refusal) from None
        except ResponseTooLargeError:
            raise FetchFailedError(f"larger than {self.max_bytes} bytes") from None
        except TimeoutError:
            raise FetchFailedError(f"no answer within {self.timeout:g} s") from None
        except httpx.InvalidURL:
            raise FetchFailedError("not a URL an HTTP client can request") from None
        except httpx.HTTPError as exc:
            raise FetchFailedError(type(exc).__name__) from None
        digest = body_hash(body, content_type)
        if cached is not None and cached.body_hash == digest:
            return FetchedPage(
                url=url,
                title=cached.title,
                text=cached.text,
                text_hash=cached.text_hash,
                etag=etag,
                last_modified=last_modified,
                not_modified=False,
                selector=selector,
                body_hash=digest,
                cache_current=_same_validators(cached, etag, last_modified),
            )
        title, text = await read_text(
            body, content_type, url, selector=selector, max_chars=self.max_chars
        )
        return FetchedPage(
            url=url,
            title=title,
            text=text,
            text_hash=text_hash(text),
            etag=etag,
            last_modified=last_modified,
            not_modified=False,
            selector=selector,
            body_hash=digest,
        )

    async def close(self) -> None:
        await self.client.aclose()
