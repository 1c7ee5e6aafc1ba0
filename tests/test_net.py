"""The outbound URL policy, as far as a URL tells without DNS."""

from __future__ import annotations

import pytest

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
