"""A TCP server that accepts connections and never answers (a stuck Redis, a partition).

It runs its own event loop in a background thread, so it keeps accepting while the test's
loop waits. `connections` and `received` say whether anything was asked of it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType


class SilentServer:
    def __init__(self) -> None:
        self.connections = 0
        self.received = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def asked(self) -> tuple[int, int]:
        """(connections accepted, bytes received) so far."""
        with self._lock:
            return self.connections, self.received

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        while chunk := await reader.read(65536):
            with self._lock:
                self.received += len(chunk)
        writer.close()

    def start(self) -> SilentServer:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, sock=self._sock), self._loop
        )
        self._server = started.result(5)
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> SilentServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
