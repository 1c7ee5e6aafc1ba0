"""A WebSocket server that answers every message with `echo: <message>` (websockets' own
server, in a background thread). `messages` are what it received, `connections` how many
clients connected."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self

from websockets.sync.server import Server, ServerConnection, serve


class EchoWebSocket:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.connections = 0
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._server: Server = serve(self._handle, host, 0)
        self.port: int = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def _handle(self, connection: ServerConnection) -> None:
        with self._lock:
            self.connections += 1
        for message in connection:
            text = message if isinstance(message, str) else message.decode()
            with self._lock:
                self.messages.append(text)
            connection.send(f"echo: {text}")

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
