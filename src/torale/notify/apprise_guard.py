"""What Apprise may do for Torale: which services, and a guard on every connection it opens.

Apprise makes its own requests (with `requests`, in its own threads), outside the guarded httpx
client of `torale.net`, and some of its services connect to hosts the URL does not show
(`mailto://…?smtp=127.0.0.1` speaks SMTP to loopback). So:

* Only services that speak HTTP through `requests` are accepted (`APPRISE_SCHEMES`, decided by
  the plugin Apprise picks for a URL, so aliases and native `https://hooks.slack.com/…` URLs
  are judged by what they are). E-mail, XMPP, MQTT, syslog, desktop and every other service
  that opens its own sockets is refused when a channel is saved and again when it is sent.
* While Torale sends through Apprise (`guarded`), every TCP connection `urllib3` opens is
  checked like the httpx guard checks its own: the host is resolved once, refused if any
  address is not allowed, and the connection is made to the checked address. So every host an
  accepted service connects to is checked, whatever its URL or query parameters say.
* The whole send has one deadline: connections are refused past it, every read waits at most
  until it, and at the deadline the sockets still open are shut down, so even a receiver that
  trickles its headers cannot keep a thread. No answer is read further than
  `ANSWER_PEEK_BYTES`.

Proxies from the environment are not used inside `guarded` (as the httpx guard ignores them).
Outside `guarded` (another library using `requests` or `urllib3`), nothing changes.
"""

from __future__ import annotations

import contextvars
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from torale.net import ANSWER_PEEK_BYTES, REFUSED, OutboundPolicy, UnsafeURLError
from torale.notify.channels import header_name_problem, header_value_problem

if TYPE_CHECKING:
    from apprise.plugins.base import NotifyBase

# Accepted services: scheme → the Apprise plugin module that sends them. Each speaks HTTP(S)
# through `requests` and nothing else.
APPRISE_SCHEMES: dict[str, str] = {
    "json": "custom_json",
    "jsons": "custom_json",
    "xml": "custom_xml",
    "xmls": "custom_xml",
    "form": "custom_form",
    "forms": "custom_form",
    "ntfy": "ntfy",
    "ntfys": "ntfy",
    "gotify": "gotify",
    "gotifys": "gotify",
    "mmost": "mattermost",
    "mmosts": "mattermost",
    "rocket": "rocketchat",
    "rockets": "rocketchat",
    "hassio": "home_assistant",
    "hassios": "home_assistant",
    "signal": "signal_api",
    "signals": "signal_api",
    "apprise": "apprise_api",
    "apprises": "apprise_api",
    "slack": "slack",
    "discord": "discord",
    "tgram": "telegram",
    "pover": "pushover",
    "pbul": "pushbullet",
    "zulip": "zulip",
    "opsgenie": "opsgenie",
    "pagerduty": "pagerduty",
    "gchat": "google_chat",
}
_PLUGIN_MODULES = frozenset(f"apprise.plugins.{module}" for module in APPRISE_SCHEMES.values())
# Accepted schemes that speak plain http (their s-suffixed forms use https).
PLAIN_HTTP_SCHEMES = frozenset(
    {"json", "xml", "form", "ntfy", "gotify", "mmost", "rocket", "hassio", "signal", "apprise"}
)
_SCHEME_LIST = ", ".join(
    f"{scheme}(s)://" if f"{scheme}s" in APPRISE_SCHEMES else f"{scheme}://"
    for scheme in APPRISE_SCHEMES
    if not (scheme.endswith("s") and scheme[:-1] in APPRISE_SCHEMES)
)


def _plugin(url: str) -> NotifyBase | None:
    import apprise  # imported here: loading its plugins takes a moment

    plugin = apprise.Apprise.instantiate(url)
    return plugin if plugin is not None and not isinstance(plugin, bool) else None


def apprise_url_problem(url: str, policy: OutboundPolicy) -> str | None:
    """Why Torale will not send to this Apprise URL, as far as the URL tells, or None."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    refused = (
        f"{scheme}:// is not a service this server sends to: it accepts services that speak "
        f"HTTP, {_SCHEME_LIST} (e-mail goes in an email channel)"
    )
    if scheme not in APPRISE_SCHEMES and scheme not in ("http", "https"):
        return refused
    plugin = _plugin(url)
    if plugin is None:
        return "Not a notification URL Apprise supports (see its documentation for formats)"
    if type(plugin).__module__ not in _PLUGIN_MODULES:  # a native https:// URL of another one
        return refused
    if (scheme in PLAIN_HTTP_SCHEMES or scheme == "http") and not policy.allow_http:
        return f"{scheme}:// is plain http, which this server does not allow (use {scheme}s://)"
    headers = getattr(plugin, "headers", None)
    for name, value in (headers if isinstance(headers, dict) else {}).items():
        problem = header_name_problem(str(name)) or header_value_problem(str(value))
        if problem:
            return f"Header parameter {str(name)!r}: {problem}"
    host = urlsplit(url).hostname
    if host:
        try:
            policy.check_host(host)
        except UnsafeURLError as exc:
            return str(exc)
    return None


# --- the connection guard ---------------------------------------------------------------


@dataclass
class Guard:
    """One send's limits, seen by every thread Apprise uses for it (a context variable)."""

    policy: OutboundPolicy
    deadline: float  # time.monotonic()
    max_bytes: int = ANSWER_PEEK_BYTES
    refused: bool = False  # a connection was refused by the policy
    expired: bool = False
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        """Keep a duplicate of the connection's socket, to shut it down at the deadline. Our
        own descriptor: it cannot be reused for something else while we hold it."""
        with self._lock:
            if self.expired:
                sock.close()
                raise TimeoutError("the notification's time limit passed")
            self._sockets.append(sock.dup())

    def expire(self) -> None:
        """End every connection this send opened; refuse new ones."""
        with self._lock:
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _resolve_blocking(host: str, port: int) -> list[str]:
    """All addresses of a host (in Apprise's threads). Tests replace this to fake DNS."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_GUARD: contextvars.ContextVar[Guard | None] = contextvars.ContextVar(
    "torale_apprise_guard", default=None
)
_installed = False
_install_lock = threading.Lock()


def _guarded_create_connection(original: Any) -> Any:
    def create_connection(
        address: tuple[str, int],
        timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
        source_address: tuple[str, int] | None = None,
        socket_options: Any = None,
    ) -> socket.socket:
        guard = _GUARD.get()
        if guard is None:
            return original(address, timeout, source_address, socket_options)  # type: ignore[no-any-return]
        host, port = address
        remaining = guard.remaining()
        if guard.expired or remaining <= 0:
            raise TimeoutError("the notification's time limit passed")
        addresses = _resolve_blocking(host.strip("[]"), port)
        if not addresses or not all(guard.policy.address_allowed(a) for a in addresses):
            guard.refused = True  # an OSError, so that urllib3 and Apprise fail as usual
            raise ConnectionRefusedError(f"{REFUSED}: {host}")
        if isinstance(timeout, int | float):
            remaining = min(remaining, float(timeout))
        error: OSError | None = None
        for checked in addresses:  # the checked addresses, never the name: no second lookup
            try:
                sock = original((checked, port), remaining, source_address, socket_options)
            except OSError as exc:
                error = exc
                continue
            guard.watch(sock)
            return sock  # type: ignore[no-any-return]
        assert error is not None
        raise error

    return create_connection


def _limited_send(original: Any) -> Any:
    def send(
        self: Any, request: Any, stream: bool = False, timeout: Any = None, **kwargs: Any
    ) -> Any:
        import requests

        guard = _GUARD.get()
        if guard is None:
            return original(self, request, stream=stream, timeout=timeout, **kwargs)
        if urlsplit(request.url).scheme == "http" and not guard.policy.allow_http:
            guard.refused = True
            raise requests.ConnectionError("plain http is not allowed on this server")
        remaining = guard.remaining()
        if remaining <= 0:
            raise requests.Timeout("the notification's time limit passed")
        parts = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        limited = tuple(
            min(float(p), remaining) if isinstance(p, int | float) else remaining for p in parts
        )
        # No proxy from the environment: it would make the address checks meaningless (as in
        # the httpx guard, which ignores them too).
        kwargs["proxies"] = {}
        response = original(self, request, stream=True, timeout=limited, **kwargs)
        body = bytearray()
        try:
            for chunk in response.iter_content(chunk_size=1024):
                body += chunk
                if len(body) >= guard.max_bytes or guard.remaining() <= 0:
                    break
        except (requests.RequestException, OSError):
            pass  # what arrived is all there is
        finally:
            response.close()
        response._content = bytes(body[: guard.max_bytes])
        response._content_consumed = True
        return response

    return send


def install() -> None:
    """Put the guard in `urllib3`'s connections and `requests`' sends (once per process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        import requests.adapters
        import urllib3.util.connection

        urllib3.util.connection.create_connection = _guarded_create_connection(
            urllib3.util.connection.create_connection
        )
        requests.adapters.HTTPAdapter.send = _limited_send(requests.adapters.HTTPAdapter.send)  # type: ignore[method-assign]
        _installed = True


@contextmanager
def guarded(policy: OutboundPolicy, *, within: float) -> Iterator[Guard]:
    """Apprise's requests made in this context (its threads included) are checked against
    `policy`, read at most ANSWER_PEEK_BYTES, and end `within` seconds from now at the latest."""
    install()
    guard = Guard(policy, time.monotonic() + within)
    token = _GUARD.set(guard)
    try:
        yield guard
    finally:
        _GUARD.reset(token)
