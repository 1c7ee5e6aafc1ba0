"""A TCP proxy on 127.0.0.1 that can cut the network between Torale and a server.

`TcpProxy(upstream_host, upstream_port)` forwards every connection to the upstream server. The
test switches it, from any thread, between:

* `forward()` — connections pass (again: connections held during a blackhole are reset first);
* `refuse()` — every open connection is reset and nothing listens: connecting is refused, as
  when the server's host is down;
* `blackhole()` — the port still accepts, but nothing passes either way and nothing is closed,
  as in a network partition: whoever waits for an answer waits until its own timeout.

It runs its own event loop in a daemon thread, so it keeps working while the test's loop (or a
synchronous fixture) waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")

CHUNK = 65536


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self.mode = "forward"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None
        self.connections = 0  # accepted so far

    # --- control, from any thread ------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def forward(self) -> None:
        self._call(self._forward())

    def refuse(self) -> None:
        self._call(self._refuse())

    def blackhole(self) -> None:
        self._call(self._blackhole())

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._refuse())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- in the proxy's loop -----------------------------------------------------------------
    async def _listen(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _forward(self) -> None:
        assert self._flowing is not None
        if self.mode == "blackhole":
            self._reset_all()  # what was held is lost, as after a real partition
        self.mode = "forward"
        self._flowing.set()
        if self._server is None:
            await self._listen()

    async def _refuse(self) -> None:
        self.mode = "refuse"
        if self._server is not None:
            self._server.close()
            self._server = None
        self._reset_all()

    async def _blackhole(self) -> None:
        assert self._flowing is not None
        self.mode = "blackhole"
        self._flowing.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.connections += 1
        self._writers.add(writer)
        try:
            await self._flowing.wait()  # held, unanswered, during a blackhole
            if writer.is_closing():
                return  # reset when the blackhole ended
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for end in (writer, up_writer):
            self._writers.discard(end)
            end.transport.abort()

    async def _pipe(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError):
            while data := await source.read(CHUNK):
                await self._flowing.wait()
                target.write(data)
                await target.drain()
        target.transport.abort()  # one side ended: end the other (no half-open pairs)
