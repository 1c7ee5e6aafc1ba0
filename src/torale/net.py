"""Outbound HTTP policy shared by page fetches and webhooks.

Private, loopback, link-local and cloud-metadata targets are refused unless the operator allows
private networks. This module checks what can be known without DNS (scheme, literal addresses,
local host names) when a URL is saved; the fetchers check every resolved address and redirect.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_LOCAL_HOST_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
# Cloud metadata services live on link-local addresses already; these are their names.
_METADATA_HOST_NAMES = {"metadata.google.internal", "metadata", "instance-data"}


class UnsafeURLError(ValueError):
    """The URL points somewhere Torale will not send requests to."""


def is_forbidden_address(address: str) -> bool:
    """True for any address that is not a public unicast internet address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> None:
    """Refuse URLs Torale must not call, as far as the URL itself tells. Raises UnsafeURLError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURLError("URL must start with https://")
    if parts.scheme == "http" and not allow_http:
        raise UnsafeURLError("URL must use https (plain http is not allowed on this server)")
    if parts.username or parts.password:
        raise UnsafeURLError("URL must not contain credentials")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeURLError("URL has no host")
    if allow_private:
        return
    if host in _LOCAL_HOST_NAMES or host in _METADATA_HOST_NAMES or host.endswith(_LOCAL_SUFFIXES):
        raise UnsafeURLError("URL points to a local or internal host")
    try:
        forbidden = is_forbidden_address(host)
    except ValueError:
        return  # a DNS name: its addresses are checked when a request is made
    if forbidden:
        raise UnsafeURLError("URL points to a private, loopback or link-local address")
