"""Outbound HTTP policy shared by page fetches, search APIs, notifications and the identity
provider (sign-in and the sign-in tokens' keys).

Torale fetches URLs that users type, so it must not become a way into the network it runs in.
Requests to private, loopback, link-local, multicast, reserved and cloud-metadata addresses are
refused unless the operator allows them, either all at once (``allow_private``,
TORALE_ALLOW_PRIVATE_NETWORKS) or range by range (``allowed_networks``, TORALE_ALLOWED_NETWORKS).
IPv4 addresses wrapped in IPv6 (``::ffff:a.b.c.d``, NAT64, 6to4) are judged by the IPv4 inside.

The policy is enforced twice:

* ``check_url`` when a URL is saved: what the URL itself tells (scheme, credentials, literal
  addresses, local host names), so users hear about a bad URL early.
* ``guarded_client`` when a request is sent. Its transport checks the scheme of every request,
  redirect hops included, and opens every connection through a network backend that resolves the
  host name once, refuses the connection if *any* resolved address is not allowed, and then
  connects to the checked address itself. Nothing resolves the name a second time, so a DNS
  answer that changes between check and connect (DNS rebinding) cannot steer the connection.
  The URL keeps its host name, so the ``Host`` header, TLS SNI, certificate verification and the
  connection pool all work on the name as usual.

A refusal raises ``UnsafeURLError`` (a ``ValueError``, never an ``httpx.HTTPError``), so callers
can tell "not allowed" apart from network failures. A refusal at connection time says only
``REFUSED`` to users: which address a name resolves to is the operator's business (it is in
``UnsafeURLError.detail``), not something to tell whoever typed the URL.

Answers are read within limits too: a whole request (connect, send, every read) has a deadline,
not only each read, and an answer Torale does not need whole is read no further than
``ANSWER_PEEK_BYTES``.

``OutboundPolicy.from_settings`` is the one way to build the policy from the settings.

Hosts the operator configured may be trusted by name (``trusted_hosts``): the identity
provider's issuer host (TORALE_OIDC_ISSUER), the host of the sign-in tokens' key set
(TORALE_JWT_JWKS_URL) and the hosts of the search APIs (TORALE_SEARXNG_URL, TORALE_TAVILY_URL,
TORALE_BRAVE_URL) are reached whatever address they resolve to, as an intranet Keycloak or
SearXNG must be, without opening private networks to the URLs users type. Every other host,
including endpoints the provider's discovery document names elsewhere and the targets of
redirects, is judged as usual.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import httpcore
import httpx

if TYPE_CHECKING:
    from torale.config import Settings

_LOCAL_HOST_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
# Cloud metadata services live on link-local addresses already; these are their names.
_METADATA_HOST_NAMES = {"metadata.google.internal", "metadata", "instance-data"}
_NAT64 = IPv6Network("64:ff9b::/96")

IPNetwork = IPv4Network | IPv6Network
# What a user is told when a request was refused at connection time (no address, no name).
REFUSED = "refused by the outbound policy"
# The most of an answer read when only its status matters (webhooks, Apprise, error bodies).
ANSWER_PEEK_BYTES = 8 * 1024


class UnsafeURLError(ValueError):
    """The URL points somewhere Torale will not send requests to.

    ``str()`` is safe to show the user; ``detail`` may name the resolved address (for logs).
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message

    @property
    def refusal(self) -> str:
        """What to tell the user: REFUSED, and the reason when it names no address."""
        message = str(self)
        return message if message.startswith(REFUSED) else f"{REFUSED}: {message}"


class ResponseTooLargeError(Exception):
    """A response body is larger than the caller's limit."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"response is larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


def _unwrap(ip: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), else the address itself."""
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip


def _host_key(host: str) -> str:
    """A host name as compared: no brackets, no trailing dot, lowercase."""
    return host.strip("[]").rstrip(".").lower()


def is_forbidden_address(address: str) -> bool:
    """True for any address that is not a public unicast internet address."""
    ip = _unwrap(ipaddress.ip_address(address))
    return not ip.is_global or ip.is_multicast or ip.is_reserved


def _in_networks(address: str, networks: Iterable[IPNetwork]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(candidate in network for candidate in (ip, _unwrap(ip)) for network in networks)


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Where outbound requests may go."""

    allow_http: bool = True
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    # Host names (lowercase) reached whatever they resolve to: only ones the operator named.
    trusted_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        purpose: Literal["pages", "notifications", "identity", "jwks", "search"],
    ) -> OutboundPolicy:
        """The policy for requests made for `purpose`: pages may use plain http;
        notifications only when TORALE_ALLOW_HTTP_WEBHOOKS says so. The identity provider
        (TORALE_OIDC_ISSUER), the sign-in tokens' key set (TORALE_JWT_JWKS_URL) and the search
        APIs (TORALE_SEARXNG_URL, and TORALE_TAVILY_URL / TORALE_BRAVE_URL when their key is
        set) are URLs the operator named: plain http only when such a URL is http, and their
        hosts are trusted."""
        if purpose in ("identity", "jwks", "search"):
            if purpose == "search":
                urls = [
                    settings.searxng_url,
                    settings.tavily_url if settings.tavily_api_key is not None else None,
                    settings.brave_url if settings.brave_api_key is not None else None,
                ]
            else:
                urls = [settings.oidc_issuer if purpose == "identity" else settings.jwt_jwks_url]
            named = [urlsplit(url) for url in urls if url]
            return cls(
                allow_http=any(parts.scheme == "http" for parts in named),
                allow_private=settings.allow_private_networks,
                allowed_networks=settings.allowed_network_list,
                trusted_hosts=frozenset(_host_key(p.hostname) for p in named if p.hostname),
            )
        return cls(
            allow_http=purpose == "pages" or settings.allow_http_webhooks,
            allow_private=settings.allow_private_networks,
            allowed_networks=settings.allowed_network_list,
        )

    def trusts(self, host: str) -> bool:
        """Is this host one the operator named, to be reached whatever it resolves to?"""
        return bool(self.trusted_hosts) and _host_key(host) in self.trusted_hosts

    def address_allowed(self, address: str) -> bool:
        """May Torale connect to this IP address (any notation ``ipaddress`` reads)?"""
        if self.allow_private or _in_networks(address, self.allowed_networks):
            return True
        return not is_forbidden_address(address)

    def check_host(self, host: str) -> None:
        """Refuse a host name or address literal that is local or not allowed, as far as the
        name tells (no DNS). Raises UnsafeURLError."""
        host = _host_key(host)
        if self.allow_private or self.trusts(host):
            return
        if (
            host in _LOCAL_HOST_NAMES
            or host in _METADATA_HOST_NAMES
            or host.endswith(_LOCAL_SUFFIXES)
        ):
            raise UnsafeURLError("URL points to a local or internal host")
        try:
            forbidden = is_forbidden_address(host) and not _in_networks(host, self.allowed_networks)
        except ValueError:
            return  # a DNS name: its addresses are checked when a request is made
        if forbidden:
            raise UnsafeURLError("URL points to a private, loopback or link-local address")

    def check_url(self, url: str) -> None:
        """Refuse URLs Torale must not call, as far as the URL itself tells. Raises
        UnsafeURLError with a message for the user."""
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            # No HTTP client can send these (and CR/LF could smuggle a header or a log line).
            raise UnsafeURLError("URL must not contain control characters or line breaks")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            schemes = "http:// or https://" if self.allow_http else "https://"
            raise UnsafeURLError(
                f"URL must be a full address starting with {schemes} (e.g. https://example.com)"
            )
        if parts.scheme == "http" and not self.allow_http:
            raise UnsafeURLError("URL must use https (plain http is not allowed on this server)")
        if parts.username or parts.password:
            raise UnsafeURLError("URL must not contain credentials")
        host = parts.hostname or ""
        if not host.rstrip("."):
            raise UnsafeURLError("URL has no host")
        self.check_host(host)


async def _resolve(host: str, port: int) -> list[str]:
    """All addresses of a host, in the resolver's order. Tests replace this to fake DNS."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(
    policy: OutboundPolicy, host: str, port: int, *, within: float | None
) -> list[str]:
    """The addresses of `host`, resolved once, when the policy allows every one of them: connect
    to these, never to the name (a second lookup could answer differently). Raises
    UnsafeURLError when one is not allowed, TimeoutError, or OSError when the name does not
    resolve."""
    async with asyncio.timeout(within):
        addresses = await _resolve(host, port)
    if not addresses:
        raise OSError("no addresses")
    if policy.trusts(host):
        return addresses  # still connected to as resolved here: no second lookup
    for address in addresses:
        if not policy.address_allowed(address):
            raise UnsafeURLError(REFUSED, detail=f"{host} resolves to {address}")
    return addresses


async def connect_checked(
    policy: OutboundPolicy, host: str, port: int, *, within: float | None
) -> socket.socket:
    """A TCP socket connected to an address of `host` the policy allows (`checked_addresses`),
    for protocols httpx does not speak (the browser's WebSockets). Raises as
    `checked_addresses`, or OSError when no address accepts the connection."""
    loop = asyncio.get_running_loop()
    deadline = None if within is None else loop.time() + within
    addresses = await checked_addresses(policy, host, port, within=within)
    error: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout_at(deadline):
                await loop.sock_connect(sock, (address, port))
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    assert error is not None
    raise error


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the policy allows, and to exactly those."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._backend = httpcore.AnyIOBackend()

    async def _checked_addresses(self, host: str, port: int, within: float | None) -> list[str]:
        try:
            return await checked_addresses(self._policy, host, port, within=within)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        addresses = await self._checked_addresses(host, port, timeout)
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:  # the checked addresses, never the name: no second lookup
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return await self._backend.connect_tcp(
                    address, port, remaining, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeURLError(REFUSED, detail="unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The TLS settings of every outbound client that verifies with the default CA bundle.

    Built once per process: loading the CA bundle costs tens of milliseconds of CPU, and each
    httpx client would otherwise load it again (several per app, one per model client).
    """
    return httpx.create_ssl_context(trust_env=False)


def tls(verify: ssl.SSLContext | bool = True) -> ssl.SSLContext:
    """The SSL context for ``verify``: the shared default, a given context, or no checks."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    return default_tls() if verify else httpx.create_ssl_context(verify=False, trust_env=False)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with the policy checked on every request and every connection."""

    def __init__(self, policy: OutboundPolicy, *, verify: ssl.SSLContext | bool = True) -> None:
        context = tls(verify)
        super().__init__(verify=context, trust_env=False)
        self._policy = policy
        # httpx builds its pool with the default network backend; swap in one that checks.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=100,  # httpx's default limits
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        scheme = request.url.scheme
        if scheme not in ("http", "https"):
            raise UnsafeURLError(f"{scheme}:// URLs are not allowed")
        if scheme == "http" and not self._policy.allow_http:
            raise UnsafeURLError("plain http is not allowed on this server; use https")
        return await super().handle_async_request(request)


def guarded_client(
    policy: OutboundPolicy,
    *,
    timeout: float | httpx.Timeout,
    max_redirects: int = 5,
    headers: Mapping[str, str] | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """An httpx client that follows redirects and only reaches what ``policy`` allows.

    Environment proxies and .netrc are ignored (``trust_env=False``): a proxy would make the
    address checks meaningless. Close the client (``async with``) when done.
    """
    return httpx.AsyncClient(
        transport=GuardedTransport(policy, verify=verify),
        timeout=timeout,
        follow_redirects=True,
        max_redirects=max_redirects,
        headers=headers,
        trust_env=False,
    )


async def read_limited(response: httpx.Response, max_bytes: int) -> bytes:
    """Read a streamed response's (decoded) body, refusing more than ``max_bytes``.

    A Content-Length over the limit is refused before reading anything. Use with
    ``client.stream(...)`` so the connection is released whether this returns or raises.
    """
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise ResponseTooLargeError(max_bytes)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise ResponseTooLargeError(max_bytes)
    return bytes(body)
