"""One browser per process, shared by its renders, restarted when it breaks.

The browser is started on the first render (launched from `TORALE_BROWSER_PATH`, or reached
over CDP at `TORALE_BROWSER_URL`) and stopped after `idle_seconds` without one. At most
`TORALE_BROWSER_CONCURRENCY` renders hold a slot at once; each gets a fresh context
(`render`). A browser that went away (a crash, a remote that dropped the connection) is
started again by the next render; one that stops answering is retired by the render that
noticed (`retire`): Playwright cannot close a browser that does not answer, so the processes
it started are killed (`processes`). A retired browser's generation number keeps a late
render from retiring its successor.

The launch sets what routing cannot: a proxy that is a closed port on the loopback (so a
request that escapes the guard fails instead of reaching the network, loopback included:
`<-loopback>`), WebRTC without UDP, no DNS prefetching, and a JavaScript heap limit (a page
that allocates without end crashes its own renderer, not the machine). A remote browser gets
the proxy per context; start it with the same flags.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torale.browser import processes

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright

    from torale.config import Settings

logger = logging.getLogger("torale.browser")

LAUNCH_SECONDS = 60.0  # starting (or reaching) the browser, on a busy machine too
CLOSE_SECONDS = 15.0  # closing a context or the browser; longer means it does not answer
IDLE_SECONDS = 300.0
JS_HEAP_MB = 256  # per page's JavaScript heap


class BrowserUnavailableError(Exception):
    """No browser could be started or reached; the message says why (shown on the run)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """The browser a render uses, and which generation of it (see `BrowserPool.retire`)."""

    browser: Browser
    generation: int


def _black_hole() -> socket.socket:
    """A loopback port that refuses every connection: bound, never listening, and held so
    nothing else can listen on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class BrowserPool:
    def __init__(
        self,
        *,
        executable: str | None = None,
        cdp_url: str | None = None,
        concurrency: int = 2,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        if bool(executable) == bool(cdp_url):
            raise ValueError("give the browser to launch or the one to connect to")
        self._executable = executable
        self._cdp_url = cdp_url
        self._idle_seconds = idle_seconds
        self._slots = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._hole = _black_hole()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._pids: set[int] = set()
        self._browser_pid: int | None = None  # a launched browser's main process
        self._generation = 0
        self._busy = 0
        self._idle: asyncio.TimerHandle | None = None
        self.launches = 0  # browsers started (or connected to) so far

    @classmethod
    def from_settings(cls, settings: Settings) -> BrowserPool | None:
        """The process's pool, or None when no browser is configured."""
        if not settings.browser_enabled:
            return None
        url = settings.browser_url.get_secret_value() if settings.browser_url else None
        pool = cls(
            executable=settings.browser_path,
            cdp_url=url,
            concurrency=settings.browser_concurrency,
        )
        if problem := pool.problem():
            # Said at start; pages read with the browser fail with the same sentence.
            logger.warning("pages with render browser will fail: %s", problem)
        return pool

    def problem(self) -> str | None:
        """What keeps the browser from starting that can be known without starting it."""
        if importlib.util.find_spec("playwright") is None:
            return "the browser needs Playwright: pip install 'torale[browser]'"
        if self._executable and shutil.which(self._executable) is None:
            return f"TORALE_BROWSER_PATH: {self._executable} is not an executable browser"
        return None

    @property
    def proxy(self) -> str:
        """The proxy every request that escapes routing is sent to, and fails at."""
        return f"http://127.0.0.1:{self._hole.getsockname()[1]}"

    @property
    def remote(self) -> bool:
        return self._cdp_url is not None

    @property
    def browser(self) -> Browser | None:
        """The browser now running, if one is."""
        return self._browser

    def processes(self) -> set[int]:
        """The running browser's processes (and Playwright's driver) on this machine."""
        alive = processes.descendants(os.getpid())
        return {pid for pid in self._pids if pid in alive} | {
            child for pid in self._pids if pid in alive for child in processes.descendants(pid)
        }

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Lease]:
        """A render's turn: one of the concurrency slots, and the browser to use."""
        async with self._slots:
            self._busy += 1
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            try:
                yield await self._lease()
            finally:
                self._busy -= 1
                if self._busy == 0 and self._browser is not None:
                    loop = asyncio.get_running_loop()
                    self._idle = loop.call_later(self._idle_seconds, self._stop_if_idle)

    async def _lease(self) -> Lease:
        async with self._lock:
            if self._browser is None or not self.alive(self._generation):
                if self._browser is not None:
                    logger.warning("the browser went away; starting it again")
                await self._stop()
                await self._start()
            assert self._browser is not None
            return Lease(self._browser, self._generation)

    def alive(self, generation: int) -> bool:
        """Whether the browser of `generation` is still there. A launched browser is watched
        by its process: Playwright may not notice its end while its helpers live on."""
        if generation != self._generation or self._browser is None:
            return False
        if not self._browser.is_connected():
            return False
        return self._browser_pid is None or processes.running(self._browser_pid)

    async def retire(self, generation: int, reason: str) -> None:
        """Stop the browser of `generation` (it stopped answering, or broke); the next render
        starts another. Nothing happens if that generation was replaced already."""
        async with self._lock:
            if generation == self._generation and self._browser is not None:
                logger.warning("restarting the browser: %s", reason)
                await self._stop()

    def _stop_if_idle(self) -> None:
        self._idle = None

        async def stop() -> None:
            async with self._lock:
                if self._busy == 0 and self._browser is not None:
                    logger.info("stopping the browser after %g idle seconds", self._idle_seconds)
                    await self._stop()

        task = asyncio.get_running_loop().create_task(stop())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _start(self) -> None:
        if problem := self.problem():
            raise BrowserUnavailableError(problem)
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        executable = shutil.which(self._executable) if self._executable else None
        before = processes.descendants(os.getpid())
        playwright = await async_playwright().start()
        try:
            async with asyncio.timeout(LAUNCH_SECONDS):
                if self._cdp_url:
                    browser = await playwright.chromium.connect_over_cdp(self._cdp_url)
                else:
                    browser = await playwright.chromium.launch(
                        executable_path=executable, headless=True, args=self._launch_args()
                    )
        except (PlaywrightError, TimeoutError, OSError) as exc:
            self._pids = self._driver_processes(before)
            await self._end(playwright, None)
            what = "reach the browser at TORALE_BROWSER_URL" if self._cdp_url else "start it"
            logger.warning("could not %s: %s %s", what, type(exc).__name__, exc)
            raise BrowserUnavailableError(
                f"the browser is unavailable (could not {what})"
            ) from None
        self._playwright, self._browser = playwright, browser
        self._pids = self._driver_processes(before)
        # The browser is the driver's own child (Chromium's helpers are the browser's).
        driver = self._driver_pid()
        launched = processes.children(driver) if driver and not self._cdp_url else set()
        self._browser_pid = min(launched) if len(launched) == 1 else None
        if self._browser_pid is None and not self._cdp_url and processes.running(os.getpid()):
            logger.warning("cannot tell the browser's process (%s)", sorted(launched))
        self._generation += 1
        self.launches += 1

    def _driver_pid(self) -> int | None:
        """Playwright's driver (the process of `_pids` this process started itself)."""
        drivers = self._pids & processes.children(os.getpid())
        return min(drivers) if drivers else None

    @staticmethod
    def _driver_processes(before: set[int]) -> set[int]:
        """Playwright's driver started since `before`, and everything below it (the browser it
        launched): what a stuck browser's end kills, and nothing else this process started."""
        found: set[int] = set()
        for pid in processes.descendants(os.getpid()) - before:
            if b"playwright" in processes.command(pid):
                found |= {pid} | processes.descendants(pid)
        return found

    def _launch_args(self) -> list[str]:
        args = [
            f"--proxy-server={self.proxy}",
            "--proxy-bypass-list=<-loopback>",
            "--webrtc-ip-handling-policy=disable_non_proxied_udp",
            "--dns-prefetch-disable",
            "--disable-background-networking",
            f"--js-flags=--max-old-space-size={JS_HEAP_MB}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
        return args

    async def _stop(self) -> None:
        """End the current browser and its driver, killing them if they do not answer."""
        playwright, browser = self._playwright, self._browser
        self._playwright = self._browser = None
        if playwright is not None:
            await self._end(playwright, browser)
        self._pids = set()
        self._browser_pid = None

    async def _end(self, playwright: Playwright, browser: Browser | None) -> None:
        if self._browser_pid is not None and not processes.running(self._browser_pid):
            # It died: there is nothing to ask to close; end what it left behind.
            leftovers = self._pids - {self._driver_pid()}
            processes.kill(leftovers & processes.descendants(os.getpid()))
            browser = None
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                if browser is not None:
                    await browser.close()
                await playwright.stop()
        except Exception as exc:
            logger.warning("the browser did not close (%s); killing it", type(exc).__name__)
            processes.kill(self._pids & processes.descendants(os.getpid()))
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_SECONDS):
                    await playwright.stop()

    async def close(self) -> None:
        """Stop the browser (at the process's end)."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        async with self._lock:
            await self._stop()
        self._hole.close()
