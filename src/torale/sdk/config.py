"""Where the SDK and CLI find the API: arguments, then TORALE_API_KEY / TORALE_API_URL, then
~/.torale/config.json (`{"api_key", "api_url"}`, written with mode 0600)."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from torale.sdk.errors import ConfigurationError

DEFAULT_API_URL = "http://localhost:8000"


def config_path() -> Path:
    return Path(os.environ.get("TORALE_CONFIG_FILE") or Path.home() / ".torale" / "config.json")


def read_config() -> dict[str, str]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {k: str(v) for k, v in data.items() if k in ("api_key", "api_url") and v}


def write_config(values: dict[str, str | None]) -> Path:
    """Merge `values` into the config file (None removes a key); the file is private (0600)."""
    path = config_path()
    current: dict[str, str] = read_config()
    for key, value in values.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(current, handle, indent=2)
    path.chmod(0o600)
    return path


@dataclass(frozen=True, slots=True)
class Connection:
    api_key: str | None
    api_url: str


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_api_url(url: str, source: str) -> str:
    """`url` with its scheme, without a trailing slash. A URL without a scheme is taken as
    http:// when its host is this machine (`localhost:8000`: nothing leaves it), and refused
    otherwise rather than guessed: plain http to another host would send the key in clear, and
    https to a plain-http server would fail less clearly. `source` names where it came from."""
    url = url.strip().rstrip("/")
    scheme, separator, _ = url.partition("://")
    if separator:
        if scheme.lower() not in ("http", "https"):
            raise ConfigurationError(
                f"{source} must start with http:// or https://, not {scheme}:// ({url!r})"
            )
        return url
    host = urlsplit(f"//{url}").hostname or ""
    if _is_loopback(host):
        return f"http://{url}"
    raise ConfigurationError(
        f"{source} ({url!r}) has no scheme: write https://{url} (or http://{url} if that "
        "server really serves plain http)"
    )


def resolve(api_key: str | None = None, api_url: str | None = None) -> Connection:
    """The key and URL from the arguments, TORALE_API_KEY / TORALE_API_URL, the config file,
    each on its own. ConfigurationError for an API URL that cannot work."""
    stored = read_config()
    key = api_key or os.environ.get("TORALE_API_KEY") or stored.get("api_key")
    for url, source in (
        (api_url, "api_url"),
        (os.environ.get("TORALE_API_URL"), "TORALE_API_URL"),
        (stored.get("api_url"), f"api_url in {config_path()}"),
    ):
        if url:
            return Connection(api_key=key, api_url=normalise_api_url(url, source))
    return Connection(api_key=key, api_url=DEFAULT_API_URL)
