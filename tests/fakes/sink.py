"""A host that must never be reached: it counts every TCP connection and UDP datagram.

Bind it to an address the outbound policy forbids (127.0.0.2 in the tests, where 127.0.0.1 is
the only private network allowed): `touched()` says whether anything got through — a request,
a bare connection (a preconnect, a WebSocket handshake) or a packet (WebRTC's STUN). TCP
connections are answered with a small HTTP page, so that a client that does get through has
something to show for it.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self


class Sink:
    def __init__(self, host: str = "127.0.0.2") -> None:
        self.host = host
        self.connections = 0
        self.datagrams = 0
        self.received = b""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((host, 0))
        self.port: int = self._tcp.getsockname()[1]
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((host, self.port))
        self._tcp.listen(64)
        self._tcp.settimeout(0.1)
        self._udp.settimeout(0.1)
        self._threads = [
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._receive, daemon=True),
        ]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def touched(self) -> tuple[int, int]:
        """(TCP connections, UDP datagrams) received so far."""
        with self._lock:
            return self.connections, self.datagrams

    def reset(self) -> None:
        with self._lock:
            self.connections = self.datagrams = 0
            self.received = b""

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            conn.settimeout(0.5)
            try:
                data = conn.recv(4096)
                with self._lock:
                    self.received += data
                body = b"<html><body>internal secret</body></html>"
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
            except OSError:
                pass
            finally:
                conn.close()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                self._udp.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.datagrams += 1

    def start(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self._tcp.close()
        self._udp.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
