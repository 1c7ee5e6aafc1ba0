"""The browser as a page fetcher: a render, read as every page is read (`fetch.read_text`).

Its pages go through the same extraction, selectors, fingerprint, cost saver and decision as
the plain fetcher's; they are never answered from the page cache (a browser sends no
conditional request) and are not stored in it.
"""

from __future__ import annotations

from torale.browser.pool import BrowserPool
from torale.browser.render import RenderFailedError, render
from torale.config import Settings
from torale.engine.fetch import FetchedPage, FetchFailedError, read_text, text_hash
from torale.net import OutboundPolicy, UnsafeURLError

# What a run says when a target asks for the browser and the server has none.
NO_BROWSER = (
    "this server has no browser for pages with render browser (set TORALE_BROWSER_PATH or "
    "TORALE_BROWSER_URL)"
)


class BrowserFetcher:
    def __init__(
        self,
        pool: BrowserPool,
        policy: OutboundPolicy,
        *,
        timeout: float,
        max_bytes: int,
        max_chars: int,
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_chars = max_chars

    @classmethod
    def from_settings(cls, settings: Settings) -> BrowserFetcher | None:
        """The process's browser fetcher, or None when no browser is configured."""
        pool = BrowserPool.from_settings(settings)
        if pool is None:
            return None
        return cls(
            pool,
            OutboundPolicy.from_settings(settings, purpose="pages"),
            timeout=settings.fetch_timeout_seconds,
            max_bytes=settings.fetch_max_bytes,
            max_chars=settings.max_source_chars,
        )

    async def fetch(
        self, url: str, *, selector: str | None = None, screenshot: bool = False
    ) -> FetchedPage:
        """The page at `url` as the browser shows it (with `selector`: only that part), and a
        PNG of it when `screenshot`; FetchFailedError (SelectorMissedError) as `Fetcher.fetch`."""
        try:
            self.policy.check_url(url)
            page = await render(
                self.pool,
                self.policy,
                url,
                selector=selector,
                screenshot=screenshot,
                seconds=self.timeout,
                max_bytes=self.max_bytes,
            )
        except RenderFailedError as exc:
            raise FetchFailedError(f"browser: {exc}") from None
        except UnsafeURLError as exc:
            raise FetchFailedError(exc.refusal) from None
        title, text = await read_text(
            page.body, page.content_type, url, selector=selector, max_chars=self.max_chars
        )
        return FetchedPage(
            url=url,
            title=title,
            text=text,
            text_hash=text_hash(text),
            etag=None,
            last_modified=None,
            not_modified=False,
            selector=selector,
            rendered=True,
            screenshot=page.screenshot,
        )

    async def close(self) -> None:
        await self.pool.close()
