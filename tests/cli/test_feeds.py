"""`torale feeds …` through typer's CliRunner, against the real server: the URLs are printed
once, work in a reader's hands, and stop when rotated or turned off."""

from __future__ import annotations

import json
import uuid

import feedparser
import httpx
from typer.testing import CliRunner, Result

from tests.fixtures.api_server import (  # noqa: F401 - the shared server's fixtures, used here
    Api,
    _no_client_config,
    api,
    config_file,
    fake_model,
    fake_search,
    fake_web,
    fakes,
    make_user,
    user_key,
)
from torale.cli import app


def torale(api: Api, key: str, *args: str) -> Result:
    env = {"TORALE_API_URL": api.url, "TORALE_API_KEY": key, "COLUMNS": "200"}
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def feed_status(url: str) -> int:
    return httpx.get(url, timeout=10).status_code


def test_url_rotate_and_off(api: Api, user_key: str) -> None:
    task = uuid.uuid4()
    first = torale(api, user_key, "feeds", "url", "--task", str(task)).stdout
    assert "shown only this once" in first
    everything = first.split("All your notifications: ")[1].split()[0]
    assert everything.startswith(f"{api.url}/feeds/")
    assert everything.endswith("/notifications.atom")
    assert f"/tasks/{task}.atom" in first
    parsed = feedparser.parse(httpx.get(everything, timeout=10).content)
    assert not parsed.bozo
    assert parsed.feed.title == "Torale: your notifications"

    again = torale(api, user_key, "feeds", "url").stdout  # made already: not shown again
    assert "cannot be shown again" in again
    assert "feeds rotate" in again
    assert everything not in again
    assert json.loads(torale(api, user_key, "feeds", "url", "--json").stdout)["active"] is True

    rotated = json.loads(torale(api, user_key, "feeds", "rotate", "--json").stdout)
    assert rotated["notifications_url"] != everything
    assert feed_status(everything) == 404
    assert feed_status(rotated["notifications_url"]) == 200

    assert "are off" in torale(api, user_key, "feeds", "off").stdout
    assert feed_status(rotated["notifications_url"]) == 404
