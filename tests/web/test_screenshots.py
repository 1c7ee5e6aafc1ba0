"""Pages read with a browser, in the web app: the task form's `render` choice and `screenshot`
checkbox (with and without a browser on the server: the API's 422 under the field), and a run's
screenshots on the task page, served to their owner only (executions.actions.screenshot).

The runs here use Debian's Chromium (tests/fixtures/browser.py: skipped locally without it,
mandatory with CI=true)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.fakes import FakeWeb
from tests.fixtures.browser import js_page, require_chromium
from tests.fixtures.engine import run_now
from tests.fixtures.users import ApiUser
from tests.fixtures.web import Browserless, any_uuid, api_task, form_values
from torale.web.headers import PAGE_CSP

pytestmark = pytest.mark.timeout(120)

STORY = ["The espresso machine is back in stock.", "It costs 499 euros."]
FORM = {
    "mode": "change",
    "schedule_kind": "daily",
    "daily_at": "07:30",
    "timezone": "Europe/Berlin",
    "notify_behavior": "always",
}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], request: pytest.FixtureRequest) -> Any:
    """The web tests' settings; `{"browser": True}` by indirect parametrisation adds Chromium."""
    wanted = getattr(request, "param", {})
    if wanted.get("browser"):
        return settings_overrides | {
            "browser_path": require_chromium(),
            "fetch_timeout_seconds": 8,
            "run_timeout_seconds": 60,
        }
    return settings_overrides


WITH_BROWSER = pytest.mark.parametrize("settings_overrides", [{"browser": True}], indirect=True)


def _errors(text: str, field: str) -> str:
    found = re.findall(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', text)
    assert found, f"no error under {field}: " + " | ".join(
        re.findall(r'class="field-error"[^>]*>([^<]+)', text)
    )
    return str(found[0])


async def _api_refusal(client: httpx.AsyncClient, user: ApiUser, **body: Any) -> list[Any]:
    response = await client.post("/api/v1/tasks", json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    detail: list[Any] = response.json()["detail"]
    return detail


# --- the form ---------------------------------------------------------------------------------


async def test_without_a_browser_the_form_says_what_to_set_and_refuses_as_the_api(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> None:
    page = await as_alice.get("/tasks/new")
    assert re.search(r'id="render-browser"[^>]*disabled', page.text)
    assert re.search(r'id="render-plain"[^>]*checked', page.text)
    assert "TORALE_BROWSER_PATH" in page.text
    assert "TORALE_BROWSER_URL" in page.text
    shown = form_values(page.text, "/tasks/new")
    assert shown["render"] == "plain"
    assert "screenshot" not in shown

    url = fake_web.url + "/shop"
    # A post that asks for the browser all the same: the API's own message, under the field.
    [api_error] = await _api_refusal(
        as_alice.client, alice, urls=[url], render="browser", mode="change"
    )
    forced = await as_alice.post("/tasks/new", FORM | {"url_0": url, "render": "browser"})
    assert forced.status_code == 422
    assert _errors(forced.text, "render") == api_error["msg"]
    assert "TORALE_BROWSER_PATH" in api_error["msg"]
    assert re.search(r'id="url_0"[^>]*value="' + re.escape(url), forced.text)  # kept as typed

    # A screenshot of pages read plainly: refused under the checkbox, in the API's words.
    [api_error] = await _api_refusal(
        as_alice.client, alice, urls=[url], screenshot=True, mode="change"
    )
    shot = await as_alice.post("/tasks/new", FORM | {"url_0": url, "screenshot": "1"})
    assert shot.status_code == 422
    assert _errors(shot.text, "screenshot") == api_error["msg"]
    assert re.search(r'id="screenshot"[^>]*checked[^>]*aria-invalid="true"', shot.text)
    listing = await as_alice.client.get("/api/v1/tasks", headers=alice.headers)
    assert listing.json()["items"] == []  # nothing half-written


@WITH_BROWSER
async def test_with_a_browser_the_form_saves_render_and_screenshot_as_the_api(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> None:
    page = await as_alice.get("/tasks/new")
    assert not re.search(r'id="render-browser"[^>]*disabled', page.text)
    assert "TORALE_BROWSER_PATH" not in page.text
    url = fake_web.url + "/shop"
    created = await as_alice.post(
        "/tasks/new", FORM | {"url_0": url, "render": "browser", "screenshot": "1"}
    )
    assert created.status_code == 303, re.findall(r'class="field-error"[^>]*>([^<]+)', created.text)
    task_id = created.headers["location"].rsplit("/", 1)[1]
    task = (await as_alice.client.get(f"/api/v1/tasks/{task_id}", headers=alice.headers)).json()
    assert (task["render"], task["screenshot"]) == ("browser", True)

    # The edit form shows them as saved; turned back to a plain fetch, the screenshot is
    # refused under its checkbox, as the API refuses it.
    path = f"/tasks/{task_id}/edit"
    shown = form_values((await as_alice.get(path)).text, path)
    assert (shown["render"], shown["screenshot"]) == ("browser", "1")
    refused = await as_alice.post(path, shown | {"render": "plain"})
    assert refused.status_code == 422
    assert "Screenshots are taken of pages read with render browser" in _errors(
        refused.text, "screenshot"
    )
    plain = {k: v for k, v in shown.items() if k != "screenshot"} | {"render": "plain"}
    saved = await as_alice.post(path, plain)
    assert saved.status_code == 303, saved.text
    task = (await as_alice.client.get(f"/api/v1/tasks/{task_id}", headers=alice.headers)).json()
    assert (task["render"], task["screenshot"]) == ("plain", False)


# --- screenshots on the task page -------------------------------------------------------------


async def _screenshot_run(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> tuple[dict[str, Any], dict[str, Any]]:
    fake_web.set_page("/shop", js_page("Espresso machine", STORY))
    fake_web.set_page("/api", '{"price": 499}', content_type="application/json")
    task = await api_task(
        as_alice.client,
        alice,
        search_query=None,
        condition_description=None,
        mode="change",
        urls=[fake_web.url + "/shop", {"url": fake_web.url + "/api", "render": "plain"}],
        render="browser",
        screenshot=True,
    )
    run = await run_now(as_alice.client, alice, task["id"])
    assert run["status"] == "success", run
    return task, run


@pytest.mark.browser
@WITH_BROWSER
async def test_a_runs_screenshot_is_shown_on_the_task_page_and_served_to_its_owner_only(
    as_alice: Browserless,
    as_bob: Browserless,
    anonymous: httpx.AsyncClient,
    alice: ApiUser,
    fake_web: FakeWeb,
) -> None:
    task, run = await _screenshot_run(as_alice, alice, fake_web)
    src = f"/tasks/{task['id']}/runs/{run['id']}/screenshots/0"

    page = await as_alice.get(f"/tasks/{task['id']}")
    assert page.status_code == 200
    # In the current answer and in the run's row of the history, each a link to the full PNG.
    assert page.text.count(f'<img src="{src}"') == 2
    assert page.text.count(f'href="{src}"') == 2
    assert "/screenshots/1" not in page.text  # the JSON document was read plainly
    assert "<dt>Read with</dt><dd>a browser, scripts run, with screenshots</dd>" in page.text
    history = await as_alice.get(f"/tasks/{task['id']}/history", headers={"HX-Request": "true"})
    assert f'<img src="{src}"' in history.text

    image = await as_alice.get(src)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(PNG)
    assert image.headers["cache-control"] == "private, max-age=86400, immutable"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert image.headers["content-security-policy"] == PAGE_CSP
    # The same bytes as the API's route gives (one action behind both).
    api = await as_alice.client.get(
        f"/api/v1/tasks/{task['id']}/executions/{run['id']}/sources/0/screenshot",
        headers=alice.headers,
    )
    assert api.content == image.content

    # Another user's is a 404 page, as are a source without one, a run of another task, a
    # position that is no number; without a session, the sign-in page.
    for path in (
        src,
        f"/tasks/{task['id']}",
    ):
        refused = await as_bob.get(path)
        assert refused.status_code == 404
        assert PNG not in refused.content
    for path in (
        src.replace("/screenshots/0", "/screenshots/1"),
        src.replace("/screenshots/0", "/screenshots/7"),
        src.replace("/screenshots/0", "/screenshots/x"),
        src.replace("/screenshots/0", "/screenshots/-1"),
        f"/tasks/{task['id']}/runs/{any_uuid()}/screenshots/0",
        f"/tasks/{any_uuid()}/runs/{run['id']}/screenshots/0",
    ):
        missing = await as_alice.get(path)
        assert missing.status_code == 404, path
        assert missing.headers["content-type"].startswith("text/html")
    signed_out = await anonymous.get(src)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"].startswith("/signin")


@pytest.mark.browser
@WITH_BROWSER
async def test_the_task_page_shows_no_screenshot_for_runs_that_kept_none(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/shop", js_page("Espresso machine", STORY))
    task = await api_task(
        as_alice.client,
        alice,
        search_query=None,
        condition_description=None,
        mode="change",
        urls=[{"url": fake_web.url + "/shop", "render": "browser"}],
    )
    run = await run_now(as_alice.client, alice, task["id"])
    assert run["status"] == "success", run
    page = await as_alice.get(f"/tasks/{task['id']}")
    assert page.status_code == 200
    assert "/screenshots/" not in page.text
    assert 'class="shots' not in page.text
    assert "<dt>Read with</dt><dd>a browser, scripts run" in page.text
    assert '<span class="muted">(some pages)</span></dd>' in page.text  # per page, not per task
