"""The guarded outbound HTTP client, against real local servers.

Two plain servers listen on the same port, one on 127.0.0.1 (which the test policy allows) and
one on 127.0.0.2 (which it does not), so any connection that lands on the wrong address is seen.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Network, IPv6Network
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import trustme

import torale.net
from torale.net import (
    OutboundPolicy,
    ResponseTooLargeError,
    UnsafeURLError,
    guarded_client,
    read_limited,
)

LOCAL = OutboundPolicy(allowed_networks=(IPv4Network("127.0.0.1/32"),))
NOTHING = OutboundPolicy()
EVERYTHING = OutboundPolicy(allow_private=True)


@dataclass
class Seen:
    path: str
    host: str
    client_port: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, _Handler)
        self.host = address[0]
        self.tls = tls
        self.seen: list[Seen] = []
        self.sni: list[str | None] = []
        self.stopping = threading.Event()
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:  # handshake in the request's thread, not the accept loop
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed handshakes and clients that hung up are part of the tests

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        server = cast(_Server, self.server)
        parts = urlsplit(self.path)
        server.seen.append(Seen(self.path, self.headers["Host"], self.client_address[1]))
        if parts.path == "/redirect":
            self._send(302, headers={"Location": parse_qs(parts.query)["to"][0]})
        elif parts.path == "/big":
            self._send(200, b"x" * 10_000)
        elif parts.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"64\r\n" + b"y" * 100 + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif parts.path == "/slow":
            server.stopping.wait(5)
            self._send(200, b"late")
        else:
            self._send(200, f"hello from {server.host}".encode())


def redirect(server: _Server, to: str) -> str:
    return server.url("/redirect?to=" + quote(to, safe=""))


@pytest.fixture
def servers() -> Iterator[tuple[_Server, _Server]]:
    for _ in range(5):  # the port free on 127.0.0.1 is almost always free on 127.0.0.2
        one = _Server(("127.0.0.1", 0))
        try:
            two = _Server(("127.0.0.2", one.port))
            break
        except OSError:
            one.stop()
    else:
        pytest.fail("no port free on both 127.0.0.1 and 127.0.0.2")
    yield one, two
    one.stop()
    two.stop()


@pytest.fixture
def one(servers: tuple[_Server, _Server]) -> _Server:
    return servers[0]


@pytest.fixture
def two(servers: tuple[_Server, _Server]) -> _Server:
    return servers[1]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def _tls_server(ca: trustme.CA, name: str) -> _Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return _Server(("127.0.0.1", 0), tls=context)


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[_Server]:
    server = _tls_server(ca, "tls.test")
    yield server
    server.stop()


Resolver = Callable[[str, int], Awaitable[list[str]]]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, Resolver]:
    """Fake DNS: names put in the returned dict resolve through their function; others as usual."""
    real = torale.net._resolve
    fakes: dict[str, Resolver] = {}

    async def resolve(host: str, port: int) -> list[str]:
        return await (fakes.get(host) or real)(host, port)

    monkeypatch.setattr(torale.net, "_resolve", resolve)
    return fakes


def answers(*answers: list[str]) -> tuple[Resolver, list[str]]:
    """A resolver giving these answers in turn (the last one from then on), and its call log."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls), len(answers)) - 1]

    return resolve, calls


async def test_allowed_address_is_fetched(one: _Server) -> None:
    async with guarded_client(LOCAL, timeout=2) as client:
        response = await client.get(one.url())
    assert response.status_code == 200
    assert response.text == "hello from 127.0.0.1"
    assert [seen.path for seen in one.seen] == ["/"]


async def test_other_loopback_address_is_refused(two: _Server) -> None:
    async with guarded_client(LOCAL, timeout=2) as client:
        with pytest.raises(UnsafeURLError) as refused:
            await client.get(two.url())
    assert not isinstance(refused.value, httpx.HTTPError)
    assert "127.0.0.2" in refused.value.detail
    assert "127.0.0.2" not in str(refused.value)
    assert two.seen == []


async def test_redirect_to_refused_address_stops_at_the_hop(one: _Server, two: _Server) -> None:
    async with guarded_client(LOCAL, timeout=2) as client:
        with pytest.raises(UnsafeURLError):
            await client.get(redirect(one, two.url("/secret")))
    assert [seen.path.split("?")[0] for seen in one.seen] == ["/redirect"]
    assert two.seen == []


@pytest.mark.parametrize(
    "target", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::1]/"]
)
async def test_redirect_to_internal_targets_refused_without_connecting(
    one: _Server, target: str
) -> None:
    # A connection attempt would end in httpx.ConnectTimeout or ConnectError, not this.
    async with guarded_client(LOCAL, timeout=0.3) as client:
        with pytest.raises(UnsafeURLError):
            await client.get(redirect(one, target))


async def test_redirect_to_another_scheme_refused(one: _Server) -> None:
    async with guarded_client(EVERYTHING, timeout=2) as client:
        with pytest.raises(UnsafeURLError, match="ftp"):
            await client.get(redirect(one, "ftp://127.0.0.1/"))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "http://127.0.0.2:{port}/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:{port}/",
        "http://[::1]:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://[64:ff9b::7f00:1]/",
        "http://[fe80::1]/",
        "http://2130706433:{port}/",
        "http://0x7f.1:{port}/",
        "http://0177.1:{port}/",
        "http://localhost:{port}/",
    ],
)
async def test_default_policy_refuses_internal_targets(
    servers: tuple[_Server, _Server], url: str
) -> None:
    async with guarded_client(NOTHING, timeout=0.3) as client:
        with pytest.raises(UnsafeURLError):
            await client.get(url.format(port=servers[0].port))
    assert servers[0].seen == servers[1].seen == []


async def test_own_host_name_refused(servers: tuple[_Server, _Server]) -> None:
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    if any(NOTHING.address_allowed(str(address)) for address in addresses):
        pytest.skip(f"{name} resolves to a public address here")
    async with guarded_client(NOTHING, timeout=0.3) as client:
        with pytest.raises(UnsafeURLError):
            await client.get(f"http://{name}:{servers[0].port}/")
    assert servers[0].seen == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "[::ffff:127.0.0.1]"])
async def test_other_notations_of_an_allowed_address_work(one: _Server, host: str) -> None:
    async with guarded_client(LOCAL, timeout=2) as client:
        response = await client.get(f"http://{host}:{one.port}/")
    assert response.text == "hello from 127.0.0.1"
    assert one.seen[0].host == f"{host}:{one.port}"


async def test_every_resolved_address_must_be_allowed(
    one: _Server, dns: dict[str, Resolver]
) -> None:
    dns["mixed.test"], _ = answers(["127.0.0.1", "127.0.0.2"])
    async with guarded_client(LOCAL, timeout=2) as client:
        with pytest.raises(UnsafeURLError) as refused:
            await client.get(f"http://mixed.test:{one.port}/")
    # The user is told the policy refused; which address it was is for the operator's log.
    assert str(refused.value) == "refused by the outbound policy"
    assert refused.value.detail == "mixed.test resolves to 127.0.0.2"
    assert one.seen == []


async def test_allow_private_lets_everything_through(one: _Server, two: _Server) -> None:
    async with guarded_client(EVERYTHING, timeout=2) as client:
        assert (await client.get(two.url())).text == "hello from 127.0.0.2"
        assert (await client.get(redirect(one, two.url()))).text == "hello from 127.0.0.2"
        assert (await client.get(f"http://localhost:{one.port}/")).status_code == 200


async def test_a_trusted_host_is_reached_whatever_it_resolves_to(
    one: _Server, two: _Server, dns: dict[str, Resolver]
) -> None:
    """The identity provider's issuer host, which the operator named, may be private; a
    redirect from it to another private host is judged as usual."""
    dns["idp.internal"], _ = answers(["127.0.0.2"])
    policy = OutboundPolicy(trusted_hosts=frozenset({"idp.internal"}))
    async with guarded_client(policy, timeout=2) as client:
        response = await client.get(f"http://IDP.internal:{two.port}/")
        assert response.text == "hello from 127.0.0.2"
        with pytest.raises(UnsafeURLError):
            await client.get(f"http://idp.internal:{two.port}/redirect?to=" + one.url())
        with pytest.raises(UnsafeURLError):
            await client.get(f"http://localhost:{one.port}/")
    assert one.seen == []


def test_the_identity_policy_trusts_the_issuer_host_only() -> None:
    from torale.config import Settings

    settings = Settings(
        _env_file=None, oidc_issuer="http://keycloak:8080/realms/main", oidc_client_id="torale"
    )
    policy = OutboundPolicy.from_settings(settings, purpose="identity")
    assert policy.trusted_hosts == {"keycloak"}
    assert policy.allow_http  # the operator's issuer is http (an intranet or a test)
    policy.check_url("http://keycloak:8080/realms/main/protocol/openid-connect/token")
    with pytest.raises(UnsafeURLError):
        policy.check_url("http://localhost:8080/token")
    https = Settings(_env_file=None, oidc_issuer="https://idp.example", oidc_client_id="torale")
    assert not OutboundPolicy.from_settings(https, purpose="identity").allow_http
    assert OutboundPolicy.from_settings(https, purpose="pages").trusted_hosts == frozenset()


def test_the_jwks_policy_trusts_the_key_set_host_only() -> None:
    from torale.config import Settings

    settings = Settings(
        _env_file=None,
        jwt_issuer="https://idp.example",
        jwt_jwks_url="http://Keys.Intranet.:8080/jwks.json",
        oidc_issuer="https://idp.example",
        oidc_client_id="torale",
    )
    policy = OutboundPolicy.from_settings(settings, purpose="jwks")
    assert policy.trusted_hosts == {"keys.intranet"}
    assert policy.allow_http  # the operator's JWKS URL is http
    policy.check_url("http://keys.intranet:8080/jwks.json")
    with pytest.raises(UnsafeURLError):
        policy.check_url("http://localhost:8080/jwks.json")
    # Each purpose trusts its own URL's host, not the other's.
    identity = OutboundPolicy.from_settings(settings, purpose="identity")
    assert identity.trusted_hosts == {"idp.example"}
    assert not identity.allow_http
    https = Settings(
        _env_file=None, jwt_issuer="https://idp.example", jwt_jwks_url="https://idp.example/k"
    )
    assert not OutboundPolicy.from_settings(https, purpose="jwks").allow_http


def test_the_search_policy_trusts_the_configured_search_hosts_only() -> None:
    from torale.config import Settings

    settings = Settings(
        _env_file=None,
        searxng_url="http://SearXNG.Intranet:8888/",
        tavily_api_key="tvly-key",
        brave_url="https://brave.intranet",  # no Brave key: Brave is not used, not trusted
    )
    policy = OutboundPolicy.from_settings(settings, purpose="search")
    assert policy.trusted_hosts == {"searxng.intranet", "api.tavily.com"}
    assert policy.allow_http  # the operator's SearXNG URL is http
    assert not policy.allow_private
    policy.check_url("http://searxng.intranet:8888/search")
    for refused in ("http://localhost:8888/search", "http://10.0.0.1/", "http://127.0.0.2/"):
        with pytest.raises(UnsafeURLError):
            policy.check_url(refused)
    https = Settings(_env_file=None, searxng_url="https://search.example")
    assert not OutboundPolicy.from_settings(https, purpose="search").allow_http
    # Nothing configured (DuckDuckGo goes through its own client): nothing trusted, https only.
    none = OutboundPolicy.from_settings(Settings(_env_file=None), purpose="search")
    assert none.trusted_hosts == frozenset()
    assert not none.allow_http


async def test_allowed_networks_accept_mapped_addresses() -> None:
    policy = OutboundPolicy(allowed_networks=(IPv4Network("10.0.5.0/24"), IPv6Network("fd00::/8")))
    assert policy.address_allowed("10.0.5.7")
    assert policy.address_allowed("::ffff:10.0.5.7")
    assert policy.address_allowed("fd12::1")
    assert not policy.address_allowed("10.0.6.1")
    assert not policy.address_allowed("127.0.0.1")
    assert policy.address_allowed("93.184.215.14")
    assert policy.address_allowed("64:ff9b::808:808")  # NAT64 of 8.8.8.8
    assert not policy.address_allowed("64:ff9b::a00:1")  # NAT64 of 10.0.0.1
    assert not policy.address_allowed("2002:a00:1::1")  # 6to4 of 10.0.0.1
    assert not policy.address_allowed("::7f00:1")  # IPv4-compatible, reserved
    assert not policy.address_allowed("240.0.0.1")
    policy.check_url("https://10.0.5.7/")
    with pytest.raises(UnsafeURLError):
        policy.check_url("https://10.0.6.1/")


async def test_http_refused_when_not_allowed(
    one: _Server, tls_server: _Server, trusting: ssl.SSLContext, dns: dict[str, Resolver]
) -> None:
    dns["tls.test"], _ = answers(["127.0.0.1"])
    policy = OutboundPolicy(allow_http=False, allowed_networks=LOCAL.allowed_networks)
    async with guarded_client(policy, timeout=2, verify=trusting) as client:
        with pytest.raises(UnsafeURLError, match="http"):
            await client.get(one.url())
        secure = f"https://tls.test:{tls_server.port}"
        assert (await client.get(secure + "/")).status_code == 200
        with pytest.raises(UnsafeURLError, match="http"):
            await client.get(secure + "/redirect?to=" + quote(one.url(), safe=""))
    assert one.seen == []
    assert [seen.path.split("?")[0] for seen in tls_server.seen] == ["/", "/redirect"]


async def test_dns_rebinding_cannot_move_the_connection(
    one: _Server, two: _Server, dns: dict[str, Resolver]
) -> None:
    # First answer allowed, every later one not. The system resolver does not know the name,
    # so a connection that succeeds went to the checked address, not to a fresh lookup.
    dns["rebind.test"], calls = answers(["127.0.0.1"], ["127.0.0.2"])
    url = f"http://rebind.test:{one.port}/"
    async with guarded_client(LOCAL, timeout=2) as client:
        first = await client.get(url)
        second = await client.get(url)  # pooled connection: no new lookup, same address
    assert first.text == second.text == "hello from 127.0.0.1"
    assert calls == ["rebind.test"]
    assert [seen.host for seen in one.seen] == [f"rebind.test:{one.port}"] * 2
    assert two.seen == []

    async with guarded_client(LOCAL, timeout=2) as client:  # a new connection: checked again
        with pytest.raises(UnsafeURLError):
            await client.get(url)
    assert two.seen == []


async def test_connections_are_pooled(
    one: _Server, dns: dict[str, Resolver], monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    real = torale.net._resolve

    async def counting(host: str, port: int) -> list[str]:
        lookups.append(host)
        return await real(host, port)

    monkeypatch.setattr(torale.net, "_resolve", counting)
    async with guarded_client(LOCAL, timeout=2) as client:
        for _ in range(3):
            assert (await client.get(one.url())).status_code == 200
    assert len({seen.client_port for seen in one.seen}) == 1
    assert lookups == ["127.0.0.1"]


async def test_https_uses_the_host_name_for_sni_and_certificate(
    tls_server: _Server, trusting: ssl.SSLContext, dns: dict[str, Resolver]
) -> None:
    dns["tls.test"], _ = answers(["127.0.0.1"])
    async with guarded_client(LOCAL, timeout=2, verify=trusting) as client:
        response = await client.get(f"https://tls.test:{tls_server.port}/")
    assert response.text == "hello from 127.0.0.1"
    assert tls_server.sni == ["tls.test"]
    assert tls_server.seen[0].host == f"tls.test:{tls_server.port}"


async def test_https_refuses_a_certificate_for_another_name(
    ca: trustme.CA, trusting: ssl.SSLContext, dns: dict[str, Resolver]
) -> None:
    dns["tls.test"], _ = answers(["127.0.0.1"])
    impostor = _tls_server(ca, "other.test")
    try:
        async with guarded_client(LOCAL, timeout=2, verify=trusting) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://tls.test:{impostor.port}/")
        assert impostor.sni == ["tls.test"]
        assert impostor.seen == []
    finally:
        impostor.stop()


async def test_pooled_tls_connection_is_not_reused_for_another_name(
    tls_server: _Server, trusting: ssl.SSLContext, dns: dict[str, Resolver]
) -> None:
    # Both names resolve to the same address; only tls.test is on the certificate.
    dns["tls.test"], _ = answers(["127.0.0.1"])
    dns["other.test"], _ = answers(["127.0.0.1"])
    async with guarded_client(LOCAL, timeout=2, verify=trusting) as client:
        assert (await client.get(f"https://tls.test:{tls_server.port}/")).status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://other.test:{tls_server.port}/")
    assert [seen.host for seen in tls_server.seen] == [f"tls.test:{tls_server.port}"]


async def test_https_refuses_an_untrusted_certificate(
    tls_server: _Server, dns: dict[str, Resolver]
) -> None:
    dns["tls.test"], _ = answers(["127.0.0.1"])
    async with guarded_client(LOCAL, timeout=2) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://tls.test:{tls_server.port}/")


async def test_read_limited_refuses_by_content_length(one: _Server) -> None:
    async with (
        guarded_client(LOCAL, timeout=2) as client,
        client.stream("GET", one.url("/big")) as response,
    ):
        with pytest.raises(ResponseTooLargeError):
            await read_limited(response, 100)
        assert response.num_bytes_downloaded == 0
    async with (
        guarded_client(LOCAL, timeout=2) as client,
        client.stream("GET", one.url("/big")) as response,
    ):
        assert await read_limited(response, 10_000) == b"x" * 10_000


async def test_read_limited_refuses_a_long_chunked_body(one: _Server) -> None:
    async with guarded_client(LOCAL, timeout=2) as client:
        async with client.stream("GET", one.url("/chunked")) as response:
            assert "content-length" not in response.headers
            with pytest.raises(ResponseTooLargeError, match="500 bytes"):
                await read_limited(response, 500)
        async with client.stream("GET", one.url("/chunked")) as response:
            assert await read_limited(response, 2_000) == b"y" * 2_000


async def test_read_timeout_is_honoured(one: _Server) -> None:
    started = time.monotonic()
    async with guarded_client(LOCAL, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(one.url("/slow"))
    assert time.monotonic() - started < 2


async def test_slow_dns_is_a_connect_timeout(dns: dict[str, Resolver]) -> None:
    async def never(host: str, port: int) -> list[str]:
        await asyncio.sleep(30)
        return ["127.0.0.1"]

    dns["slow.test"] = never
    started = time.monotonic()
    async with guarded_client(LOCAL, timeout=0.3) as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.get("http://slow.test/")
    assert time.monotonic() - started < 2


async def test_unknown_host_is_a_connect_error() -> None:
    async with guarded_client(LOCAL, timeout=2) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://no-such-host.invalid/")
