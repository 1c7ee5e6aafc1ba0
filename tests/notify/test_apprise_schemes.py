"""Which Apprise services Torale sends to, and the ways around the outbound policy that are
closed: services that open their own sockets (e-mail's `smtp=` pointing at loopback), header
parameters that would break the request, and hosts that resolve somewhere not allowed."""

from __future__ import annotations

import importlib
import inspect
import ipaddress
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import requests

import torale.notify.apprise_guard as guard_module
from tests.fakes import WebhookReceiver
from tests.fixtures.outgoing import apprise_outgoing
from tests.fixtures.users import ApiUser
from torale.net import REFUSED, OutboundPolicy
from torale.notify.apprise_guard import (
    APPRISE_SCHEMES,
    apprise_url_problem,
    guarded,
)
from torale.notify.apprise_sender import AppriseSender

HTTPS_ONLY = OutboundPolicy(allow_http=False)

ACCEPTED = [
    "jsons://hooks.example.com/x",
    "xmls://hooks.example.com/x",
    "forms://hooks.example.com/x",
    "ntfys://ntfy.example.com/topic",
    "gotifys://gotify.example.com/AbCdEfGhIjKlMnO",
    "mmosts://mm.example.com/abcdefghijklmnopqrstuvwxyz",
    "rockets://user:pass@chat.example.com/#channel",
    "hassios://ha.example.com/accesstoken",
    "signals://signal.example.com/+12025550100/+12025550101",
    "apprises://apprise.example.com/token",
    "slack://T1234567/B1234567/abcdefghijklmnopqrstuvwx",
    "https://hooks.slack.com/services/T1234567/B1234567/abcdefghijklmnopqrstuvwx",
    "discord://123456789/abcdefghijk",
    "tgram://123456789:abcdefghij_0123456789ABCDEFGHIJKLMN/12345",
    "pover://abcdefghijklmnopqrstuvwxyz1234@abcdefghijklmnopqrstuvwxyz1234",
    "pbul://o.abcdefghijklmnopqrstuvwxyz1234",
    "opsgenie://abcdefghijklmnopqrst",
    "jsons://hooks.example.com/x?+X-Token=abc&:extra=1&-q=2",
]

REFUSED_URLS = [
    # E-mail opens its own SMTP connection, to wherever `smtp=` says (the reported bypass).
    ("mailto://u:p@8.8.8.8?smtp=127.0.0.1&port=25", "is not a service this server sends to"),
    ("mailtos://u:p@example.com?smtp=127.0.0.1", "is not a service this server sends to"),
    ("xmpp://u:p@example.com", "is not a service this server sends to"),
    ("mqtt://example.com/topic", "is not a service this server sends to"),
    ("rsyslog://127.0.0.1", "is not a service this server sends to"),
    ("syslog://", "is not a service this server sends to"),
    ("growl://example.com", "is not a service this server sends to"),
    ("https://example.com/not-a-service", "Not a notification URL Apprise supports"),
    ("json://hooks.example.com/x", "plain http"),
    ("jsons://hooks.example.com/?+Transfer-Encoding=chunked", "belongs to the HTTP connection"),
    ("jsons://hooks.example.com/?+Host=internal", "belongs to the HTTP connection"),
    ("jsons://hooks.example.com/?+webhook-signature=x", "set by Torale"),
    ("jsons://hooks.example.com/?+X-Token=%C3%A9", "visible ASCII"),
    ("jsons://127.0.0.2/", "private, loopback or link-local"),
    ("jsons://localhost/", "local or internal host"),
]

_SOCKET_LIBRARIES = ("smtplib", "socket", "paho", "slixmpp", "subprocess", "asyncio", "ssl")


@pytest.mark.parametrize("url", ACCEPTED)
def test_accepted_services(url: str) -> None:
    assert apprise_url_problem(url, HTTPS_ONLY) is None


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS)
def test_refused_urls(url: str, reason: str) -> None:
    problem = apprise_url_problem(url, HTTPS_ONLY)
    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize("scheme", sorted(APPRISE_SCHEMES))
def test_every_accepted_service_speaks_only_http(scheme: str) -> None:
    """The decision, checked against the installed Apprise: each accepted scheme is sent by the
    plugin named for it, and that plugin opens no socket of its own (all its connections go
    through `requests`, where the guard checks them)."""
    from apprise.manager_plugins import NotificationManager

    plugin = NotificationManager()[scheme]  # type: ignore[no-untyped-call]
    assert plugin.__module__ == f"apprise.plugins.{APPRISE_SCHEMES[scheme]}"
    source = inspect.getsource(importlib.import_module(plugin.__module__))
    imports = [
        line.split()[1]
        for line in source.splitlines()
        if line.strip().startswith(("import ", "from ")) and len(line.split()) > 1
    ]
    assert "requests" in imports
    assert not [name for name in imports if name.split(".")[0] in _SOCKET_LIBRARIES], imports


async def test_refused_at_save_time(client: httpx.AsyncClient, alice: ApiUser) -> None:
    for url, reason in REFUSED_URLS:
        if url.startswith("json://"):
            continue  # the notify tests' server allows plain http
        response = await client.post(
            "/api/v1/tasks",
            json={"search_query": "q", "notifications": [{"type": "apprise", "url": url}]},
            headers=alice.headers,
        )
        assert response.status_code == 422, (url, response.text)
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "notifications", 0, "url"], url
        assert reason in error["msg"], (url, error)
    assert (await client.get("/api/v1/tasks", headers=alice.headers)).json()["total"] == 0


# --- at send time -----------------------------------------------------------------------------


class Listener:
    """A TCP port on 127.0.0.1 that counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


async def test_email_pointed_at_loopback_is_refused_when_sent(listener: Listener) -> None:
    """A channel saved before this rule (or written to the database by other means)."""
    sender = AppriseSender(OutboundPolicy(), timeout=2)
    url = f"mailto://u:p@example.com?smtp=127.0.0.1&port={listener.port}&to=a@example.com"
    result = await sender.send(apprise_outgoing(url))
    assert (result.ok, result.permanent) == (False, True)
    assert result.error is not None
    assert result.error.startswith(REFUSED)
    assert listener.connections == 0


@pytest.fixture
def blocking_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Fake DNS for the connections Apprise makes: names put in the dict resolve to them."""
    real = guard_module._resolve_blocking
    fakes: dict[str, list[str]] = {}

    def resolve(host: str, port: int) -> list[str]:
        return fakes[host] if host in fakes else real(host, port)

    monkeypatch.setattr(guard_module, "_resolve_blocking", resolve)
    return fakes


async def test_a_name_resolving_to_a_forbidden_address_is_refused_when_sent(
    blocking_dns: dict[str, list[str]],
) -> None:
    """The URL passes every check the URL allows (a public-looking name); the connection does
    not. The user is told it was refused, not where the name points."""
    with WebhookReceiver(host="127.0.0.2") as forbidden:
        blocking_dns["hooks.test"] = ["127.0.0.2"]
        sender = AppriseSender(OutboundPolicy(allow_http=True), timeout=2)
        result = await sender.send(apprise_outgoing(f"json://hooks.test:{forbidden.port}/x"))
        assert (result.ok, result.error, result.permanent) == (False, REFUSED, True)
        assert forbidden.requests == []


def test_every_connection_inside_the_guard_is_checked() -> None:
    """Whatever a plugin connects to (a second host, a redirect, a host from a parameter)."""
    allowed = OutboundPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    with WebhookReceiver(host="127.0.0.2") as forbidden, WebhookReceiver() as fine:
        with guarded(allowed, within=2) as guard:
            assert requests.post(fine.url_for("/ok"), json={}, timeout=2).status_code == 200
            assert guard.refused is False
            with pytest.raises(requests.ConnectionError):
                requests.post(forbidden.url_for("/no"), json={}, timeout=2)
            assert guard.refused is True
        assert forbidden.requests == []
        # Outside the guard, requests is left as it was.
        assert requests.post(forbidden.url_for("/other"), json={}, timeout=2).status_code < 500


def test_an_environment_proxy_does_not_carry_guarded_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proxy would make the address checks meaningless: inside the guard, requests go to
    their host, not to the proxy the environment names."""
    with WebhookReceiver() as proxy, WebhookReceiver() as target:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        allowed = OutboundPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
        with guarded(allowed, within=2):
            requests.post(target.url_for("/direct"), json={}, timeout=2)
        assert [r.path for r in target.requests] == ["/direct"]
        assert proxy.requests == []
