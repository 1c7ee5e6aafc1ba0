"""`torale task create --render browser --screenshot`, `task update --render/--screenshot` and
`task sources` (with the screenshots' paths) through typer's CliRunner: against a real
`torale serve` with Debian's Chromium (tests/fixtures/browser.py: skipped locally without it,
mandatory with CI=true), and against the package's shared server, which has no browser (the
API's 422, naming the setting, exit 1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from tests.fixtures.api_server import (  # noqa: F401 - the shared server's fixtures, used here
    KEY_RE,
    Api,
    Fakes,
    _no_client_config,
    api,
    bootstrap_key,
    config_file,
    fake_model,
    fake_search,
    fake_web,
    fakes,
    make_user,
    server_env,
    start_torale,
    user_key,
)
from tests.fixtures.browser import js_page, require_chromium
from torale.cli import app

pytestmark = pytest.mark.timeout(120)

STORY = ["The espresso machine is back in stock.", "It costs 499 euros."]


def torale(api: Api, key: str, *args: str) -> Result:
    env = {"TORALE_API_URL": api.url, "TORALE_API_KEY": key, "COLUMNS": "250"}
    return CliRunner().invoke(app, list(args), env=env)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def browser_api(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    env = server_env(fakes, TORALE_BROWSER_PATH=require_chromium())
    server, data_dir = start_torale(tmp_path_factory.mktemp("torale-browser"), env)
    try:
        yield Api(server=server, admin_key=bootstrap_key(server), data_dir=data_dir)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser_key(browser_api: Api) -> str:
    result = CliRunner().invoke(
        app,
        ["keys", "create", "--email", "cli-browser@example.com"],
        env={"TORALE_DATA_DIR": str(browser_api.data_dir), "TORALE_LOG_LEVEL": "warning"},
    )
    assert result.exit_code == 0, result.output
    match = KEY_RE.search(result.stdout)
    assert match, result.output
    return match.group(0)


@pytest.mark.browser
def test_create_with_the_browser_and_screenshots_then_list_the_runs_sources(
    browser_api: Api, browser_key: str, fakes: Fakes
) -> None:
    fakes.web.set_page("/cli-shop", js_page("Espresso machine", STORY))
    shop = fakes.web.url + "/cli-shop"
    created = json.loads(
        ok(
            torale(
                browser_api, browser_key, "task", "create", "--url", shop,
                "--when", 'contains "back in stock"', "--render", "browser", "--screenshot",
                "--json",
            )
        ).stdout
    )  # fmt: skip
    assert (created["render"], created["screenshot"]) == ("browser", True)
    task_id = created["id"]
    shown = ok(torale(browser_api, browser_key, "task", "get", task_id)).stdout
    assert "reading        browser, with screenshots" in shown

    run = json.loads(
        ok(torale(browser_api, browser_key, "task", "execute", task_id, "--wait", "--json")).stdout
    )
    assert run["status"] == "success", run
    assert run["condition_met"] is True  # the text JavaScript wrote
    path = f"/api/v1/tasks/{task_id}/executions/{run['id']}/sources/0/screenshot"

    table = ok(torale(browser_api, browser_key, "task", "sources", task_id, run["id"])).stdout
    assert shop in table
    assert path in table
    as_json = json.loads(
        ok(torale(browser_api, browser_key, "task", "sources", task_id, run["id"], "--json")).stdout
    )
    assert [(s["url"], s["screenshot"]) for s in as_json] == [(shop, path)]
    image = httpx.get(
        browser_api.url + path, headers={"Authorization": f"Bearer {browser_key}"}, timeout=10
    )
    assert image.status_code == 200
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")

    # Back to a plain fetch: the screenshot then has nothing to show, refused by the API (exit 1).
    refused = torale(browser_api, browser_key, "task", "update", task_id, "--render", "plain")
    assert refused.exit_code == 1, refused.output
    assert "screenshot" in refused.stderr
    updated = json.loads(
        ok(
            torale(
                browser_api, browser_key, "task", "update", task_id, "--render", "plain",
                "--no-screenshot", "--json",
            )
        ).stdout
    )  # fmt: skip
    assert (updated["render"], updated["screenshot"]) == ("plain", False)


def test_without_a_browser_on_the_server_the_refusal_says_what_to_set(
    api: Api, user_key: str, fakes: Fakes
) -> None:
    result = torale(
        api, user_key, "task", "create", "--url", fakes.web.url + "/shop", "--when-changed",
        "--render", "browser",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "render:" in result.stderr
    assert "TORALE_BROWSER_PATH" in result.stderr
    listing: Any = json.loads(ok(torale(api, user_key, "task", "list", "--json")).stdout)
    assert listing == []


@pytest.mark.parametrize(
    "args",
    [
        ["task", "create", "--url", "https://a.example/", "--render", "chrome"],
        ["task", "sources", "00000000-0000-0000-0000-000000000001", "not-a-run"],
    ],
)
def test_a_bad_render_or_run_id_is_a_usage_error(api: Api, user_key: str, args: list[str]) -> None:
    result = torale(api, user_key, *args)
    assert result.exit_code == 2, result.output
