"""The outbound URL policy, as far as a URL tells without DNS."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.users import ApiUser
from torale.net import OutboundPolicy, UnsafeURLError, is_forbidden_address


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> None:
    OutboundPolicy(allow_http=allow_http, allow_private=allow_private).check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://10.1.2.3/x",
        "https://172.16.0.1/",
        "https://192.168.1.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[fd00::1]/",
        "https://0.0.0.0/",
        "https://100.64.0.1/",
        "https://localhost/",
        "https://LOCALHOST./",
        "https://printer.local/",
        "https://metadata.google.internal/",
        "https://db.internal/",
    ],
)
def test_private_targets_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        check_url(url, allow_http=True, allow_private=False)
    check_url(url, allow_http=True, allow_private=True)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "file:///etc/passwd", "javascript:alert(1)", "https://", "x"]
)
def test_bad_schemes_and_hosts_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        check_url(url, allow_http=True, allow_private=True)


def test_http_only_when_allowed() -> None:
    with pytest.raises(UnsafeURLError, match="https"):
        check_url("http://example.com/", allow_http=False, allow_private=False)
    check_url("http://example.com/", allow_http=True, allow_private=False)


def test_credentials_in_url_refused() -> None:
    with pytest.raises(UnsafeURLError, match="credentials"):
        check_url("https://user:pw@example.com/", allow_http=False, allow_private=False)


def test_public_addresses_pass() -> None:
    check_url("https://93.184.215.14/", allow_http=False, allow_private=False)
    check_url("https://example.com:8443/path?q=1", allow_http=False, allow_private=False)
    assert not is_forbidden_address("8.8.8.8")
    assert is_forbidden_address("224.0.0.1")


def _msg(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    message: str = response.json()["detail"][0]["msg"]
    return message


@pytest.mark.parametrize("url", ["example.com", "www.example.com/page", "ftp://example.com/x"])
async def test_a_url_without_http_says_what_a_full_url_is(
    client: httpx.AsyncClient, alice: ApiUser, url: str
) -> None:
    response = await client.post(
        "/api/v1/tasks", json={"search_query": "q", "urls": [url]}, headers=alice.headers
    )
    assert response.json()["detail"][0]["loc"] == ["body", "urls", 0]
    message = _msg(response)
    # Task pages may be plain http: the message must not say https only.
    assert message == (
        "URL must be a full address starting with http:// or https:// (e.g. https://example.com)"
    )
    webhook = {"type": "webhook", "url": url}
    response = await client.post(
        "/api/v1/tasks",
        json={"search_query": "q", "notifications": [webhook]},
        headers=alice.headers,
    )
    assert response.json()["detail"][0]["loc"] == ["body", "notifications", 0, "url"]
    # Webhooks are https only on this server (TORALE_ALLOW_HTTP_WEBHOOKS is off).
    assert _msg(response) == (
        "URL must be a full address starting with https:// (e.g. https://example.com)"
    )
