"""Run an ASGI app on a real TCP port in a background thread, and a base class for fakes.

`LocalServer` is independent of any asyncio event loop in the test (uvicorn runs its own loop in
its own thread), so the same server works from sync tests, async tests and session fixtures.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

__all__ = ["Failure", "FakeService", "LocalServer", "RecordedRequest"]


class _QuickServer(uvicorn.Server):
    """uvicorn's server, noticing `should_exit` within ~10 ms instead of its 100 ms tick."""

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            for _ in range(10):
                await asyncio.sleep(0.01)
                if self.should_exit:
                    return
            counter = (counter + 1) % 864000


class LocalServer:
    """An ASGI app served by uvicorn on `host:port` from a daemon thread.

    `port=0` picks a free port at the first `start()`; later starts (`restart()`) reuse it, so a
    URL handed to the code under test stays valid across a stop/start cycle.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        graceful_timeout: int = 1,
    ) -> None:
        self.app = app
        self.host = host
        self._port = port
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.graceful_timeout = graceful_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("LocalServer has no port before its first start()")
        return self._port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:43121``."""
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + (path if path.startswith("/") else "/" + path)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Start serving; returns once the port accepts connections (or raises)."""
        with self._lock:
            if self.running:
                return self
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self._port))
            except OSError:
                sock.close()
                raise
            self._port = int(sock.getsockname()[1])
            config = uvicorn.Config(
                self.app,
                host=self.host,
                port=self._port,
                loop="asyncio",
                ws="none",
                lifespan="off",
                log_config=None,
                log_level=None,
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=self.graceful_timeout,
            )
            server = _QuickServer(config)
            thread = threading.Thread(
                target=server.run,
                kwargs={"sockets": [sock]},
                name=f"LocalServer-{self.host}:{self._port}",
                daemon=True,
            )
            self._server, self._thread, self._socket = server, thread, sock
            thread.start()
            deadline = time.monotonic() + self.start_timeout
            while not server.started:
                if not thread.is_alive():
                    self._cleanup()
                    raise RuntimeError(f"LocalServer on {self.host}:{self._port} failed to start")
                if time.monotonic() > deadline:
                    self._halt(server, thread)
                    raise TimeoutError(f"LocalServer on {self.host}:{self._port} did not start")
                time.sleep(0.005)
            self._wait_accepting(deadline)
            return self

    def _wait_accepting(self, deadline: float) -> None:
        while True:
            try:
                with socket.create_connection((self.host, self._port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def stop(self) -> None:
        """Stop gracefully (bounded); afterwards the port refuses connections."""
        with self._lock:
            server, thread = self._server, self._thread
            if server is None or thread is None:
                return
            self._halt(server, thread)

    def _halt(self, server: uvicorn.Server, thread: threading.Thread) -> None:
        server.should_exit = True
        thread.join(self.stop_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(self.stop_timeout)
        alive = thread.is_alive()
        self._cleanup()
        if alive:
            raise TimeoutError(f"LocalServer on {self.host}:{self._port} did not stop")

    def _cleanup(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def restart(self) -> Self:
        """Stop, then start again on the same host and port."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        port = self._port or "?"
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} http://{self.host}:{port} {state}>"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as a fake received it (headers have lower-case names)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Failure:
    """An injected failure: status, optional body (provider-shaped default) and headers."""

    status: int = 500
    body: Any = None
    headers: Mapping[str, str] | None = None
    retry_after: float | None = None


class FakeService:
    """Base for fakes: a Starlette app on a `LocalServer`, with recording and failure injection.

    Handlers call `await self._admit(request)`, which records the request, applies the configured
    delay and returns the next injected failure (or None to proceed).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._requests: list[RecordedRequest] = []
        self._failures: deque[Failure] = deque()
        self._delay = 0.0
        self.server = LocalServer(self.build_app(), host, port)

    # -- to override -----------------------------------------------------------------------
    def build_app(self) -> Starlette:
        raise NotImplementedError

    def error_response(self, failure: Failure) -> Response:
        """Render an injected failure; fakes override this to speak their provider's shape."""
        body = failure.body if failure.body is not None else {"error": f"HTTP {failure.status}"}
        return JSONResponse(body, failure.status, headers=self._failure_headers(failure))

    # -- server delegation -----------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    def url_for(self, path: str) -> str:
        return self.server.url_for(path)

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> Self:
        self.server.restart()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- observation -----------------------------------------------------------------------
    @property
    def calls(self) -> int:
        """Number of requests received (including failed and unknown-path ones)."""
        with self._lock:
            return self._calls

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received, oldest first."""
        with self._lock:
            return list(self._requests)

    # -- injection -------------------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Make the next `n` requests fail with `status` (queued after earlier fail_next calls)."""
        with self._lock:
            self._failures.extend(Failure(status, body, headers, retry_after) for _ in range(n))

    def delay(self, seconds: float) -> None:
        """Delay every following request by `seconds` before answering (0 turns it off)."""
        with self._lock:
            self._delay = max(0.0, seconds)

    def reset(self) -> None:
        """Forget requests and injected failures/delays (subclasses also restore their config)."""
        with self._lock:
            self._calls = 0
            self._requests.clear()
            self._failures.clear()
            self._delay = 0.0

    # -- helpers for handlers --------------------------------------------------------------
    async def _admit(self, request: Request) -> tuple[RecordedRequest, Failure | None]:
        body = await request.body()
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        with self._lock:
            self._calls += 1
            self._requests.append(record)
            failure = self._failures.popleft() if self._failures else None
            delay = self._delay
        if delay:
            await asyncio.sleep(delay)
        return record, failure

    @staticmethod
    def _failure_headers(failure: Failure) -> dict[str, str]:
        headers = dict(failure.headers or {})
        if failure.retry_after is not None:
            value = failure.retry_after
            headers["retry-after"] = str(int(value)) if value == int(value) else str(value)
        return headers

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.server!r}>"
