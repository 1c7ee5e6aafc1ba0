"""An HTTP server that never finishes answering, for testing deadlines and answer limits.

`endless`: answers 200 at once and then streams a chunked body forever, as fast as the client
reads it (paced so as not to burn CPU). `trickle`: sends a status line and then one byte of an
endless header every `interval` seconds, so that no single read ever times out.

`bytes_sent` counts what the server managed to send: with small socket buffers on its side, a
client that stops reading and closes soon makes it stop soon; one that reads everything makes
it grow without end. `open_connections` tells whether clients still hold a connection.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Literal, Self

Mode = Literal["endless", "trickle"]


class StallingServer:
    def __init__(
        self,
        mode: Mode,
        *,
        host: str = "127.0.0.1",
        interval: float = 0.05,
        chunk: int = 16 * 1024,
        content_type: str = "application/json",
    ) -> None:
        self.mode = mode
        self.host = host
        self.interval = interval
        self.chunk = chunk
        self.content_type = content_type
        self.bytes_sent = 0
        self.requests = 0
        self.open_connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + path

    def wait_closed(self, timeout: float) -> bool:
        """True once no client holds a connection (within `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.open_connections == 0:
                return True
            time.sleep(0.02)
        return self.open_connections == 0

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            with self._lock:
                self.open_connections += 1
                self.requests += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                return
            data += piece

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.bytes_sent += len(data)

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._read_request(conn)
            conn.settimeout(10)
            if self.mode == "endless":
                self._send(
                    conn,
                    b"HTTP/1.1 200 OK\r\nContent-Type: "
                    + self.content_type.encode()
                    + b"\r\nTransfer-Encoding: chunked\r\n\r\n",
                )
                piece = b"[" + b"1," * (self.chunk // 2 - 1)
                frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
                while not self._stop.is_set():
                    self._send(conn, frame)
                    time.sleep(0.002)
            else:
                self._send(conn, b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not self._stop.is_set():
                    self._send(conn, b"a")
                    time.sleep(self.interval)
        except OSError:
            pass  # the client went away: what a good client does
        finally:
            conn.close()
            with self._lock:
                self.open_connections -= 1

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
