"""A seat belt for tests that aim Torale at forbidden addresses: every TCP connect is recorded,
and nothing leaves the machine even if the product's own guard fails.

`ConnectSpy` replaces `socket.socket.connect` / `connect_ex` (asyncio, anyio, httpx, requests
and urllib3 all connect through them) for as long as it is installed:

* 127.0.0.1, the one address the tests allow Torale to reach, connects as usual;
* other loopback addresses (127.0.0.2, ::1) connect too, so that the local servers listening
  there can testify that they received nothing; the attempt is recorded;
* anything else (10.x, 169.254.169.254, public addresses) is recorded and refused *without*
  connecting: a product bug shows up as a failed assertion, never as traffic on the network.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ALLOWED = ipaddress.ip_address("127.0.0.1")


def _host_of(address: Any) -> str | None:
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        return address[0]
    return None  # a unix socket path or something else that is not an IP connection


class ConnectSpy:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: list[str] = []

    @property
    def attempts(self) -> list[str]:
        """Every address other than 127.0.0.1 something tried to connect to, in order."""
        with self._lock:
            return list(self._attempts)

    def clear(self) -> None:
        with self._lock:
            self._attempts.clear()

    def _check(self, address: Any) -> bool:
        """Record the attempt; True when the connection may really be made."""
        host = _host_of(address)
        if host is None:
            return True
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return True  # not an address (cannot happen for TCP connects): let the OS decide
        if ip == ALLOWED:
            return True
        with self._lock:
            self._attempts.append(str(ip))
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return ip.is_loopback or (mapped is not None and mapped.is_loopback)

    @contextmanager
    def installed(self) -> Iterator[ConnectSpy]:
        original_connect = socket.socket.connect
        original_connect_ex = socket.socket.connect_ex
        spy = self

        def connect(sock: socket.socket, address: Any) -> None:
            if not spy._check(address):
                raise ConnectionRefusedError(errno.ECONNREFUSED, "refused by the test's ConnectSpy")
            original_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            if not spy._check(address):
                return errno.ECONNREFUSED
            return original_connect_ex(sock, address)

        setattr(socket.socket, "connect", connect)  # noqa: B010 (a method, patched)
        setattr(socket.socket, "connect_ex", connect_ex)  # noqa: B010
        try:
            yield self
        finally:
            setattr(socket.socket, "connect", original_connect)  # noqa: B010
            setattr(socket.socket, "connect_ex", original_connect_ex)  # noqa: B010
