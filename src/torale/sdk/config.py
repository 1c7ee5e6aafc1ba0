"""Where the SDK and CLI find the API: arguments, then TORALE_API_KEY / TORALE_API_URL, then
~/.torale/config.json (`{"api_key", "api_url"}`, written with mode 0600)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

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


def resolve(api_key: str | None = None, api_url: str | None = None) -> Connection:
    stored = read_config()
    key = api_key or os.environ.get("TORALE_API_KEY") or stored.get("api_key")
    url = api_url or os.environ.get("TORALE_API_URL") or stored.get("api_url") or DEFAULT_API_URL
    return Connection(api_key=key, api_url=url.rstrip("/"))
