"""Journeys in a real Chromium (Debian's, driven by Playwright) against a real `torale serve`
with local fakes for search, pages, the model and a webhook receiver.

Locally these skip, with the reason, when Chromium or Playwright is missing; with CI=true a
missing browser fails the run (tests/conftest.py `require_service`), and `.ci/run` installs
Chromium when it is absent."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import (
    FakeOpenAI,
    FakeSearxng,
    FakeWeb,
    ToolCall,
    WebhookReceiver,
    article_html,
)
from tests.fixtures.browser import js_page
from tests.fixtures.engine import MET
from tests.fixtures.jwks import key_a  # noqa: F401 - the provider's key, as a fixture here
from tests.fixtures.oidc_provider import (  # noqa: F401 - the provider, as a fixture here
    OpenIDProvider,
    oidc_provider,
)
from tests.fixtures.services import require_service
from tests.fixtures.web import chromium_path
from tests.web.stage import Stage

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - playwright is in the dev extra
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    if sync_playwright is None:
        require_service(
            "Playwright", "the playwright package is not installed (pip install -e '.[dev]')"
        )
    if not path.exists():
        require_service("Chromium", f"{path} not found (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(path), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def stage(
    browser: Browser,
    tmp_path_factory: pytest.TempPathFactory,
    fake_model: FakeOpenAI,
    fake_search: FakeSearxng,
    fake_web: FakeWeb,
    receiver: WebhookReceiver,
) -> Iterator[Stage]:
    # With a browser for pages that need one (started on the first such page only).
    made = Stage(
        tmp_path_factory.mktemp("serve"),
        fake_model,
        fake_search,
        fake_web,
        receiver,
        extra_env={"TORALE_BROWSER_PATH": str(chromium_path())},
    )
    made.start()
    try:
        assert made.admin_key, made.output()
        assert made.signin_link, made.output()
        yield made
    finally:
        made.stop()


@dataclass
class Watched:
    """A page and what it did that it must not: CSP violations, dialogs, foreign requests."""

    page: Page
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.dialogs == [], self.dialogs
        assert self.foreign == [], self.foreign
        csp = [e for e in self.console_errors if "Content Security Policy" in e]
        assert csp == [], csp


def open_page(
    browser: Browser, stage: Stage, *, width: int = 1280, accept_dialogs: bool = False
) -> Watched:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    # Playwright waits 30 s by default; a preview took longer beside two CPU burners and the
    # rest of the suite (load average 15). These tests are about what the pages do.
    page.set_default_timeout(60_000)
    watched = Watched(page, stage.base_url)

    def on_dialog(dialog: Any) -> None:
        if accept_dialogs and dialog.type == "confirm":
            dialog.accept()
            return
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on(
        "console",
        lambda message: (
            watched.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.on(
        "request",
        lambda request: (
            watched.foreign.append(request.url)
            if not request.url.startswith((stage.base_url, "data:", "blob:"))
            else None
        ),
    )
    return watched


def publish_news(stage: Stage, text: str = "Apple announced the iPhone 18 for September 9.") -> str:
    url = stage.web.url + "/newsroom/iphone"
    stage.web.set_page("/newsroom/iphone", article_html("Apple Newsroom", [text]))
    stage.search.set_results(None, [(url, "Apple announces iPhone 18", "September 9")])
    return url


def api_status(stage: Stage, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.get(stage.base_url + "/api/v1/tasks", headers=headers, timeout=10).status_code


def test_printed_key_then_a_task_with_preview_run_pause_resume_and_sign_out(
    browser: Browser, stage: Stage
) -> None:
    publish_news(stage)
    w = open_page(browser, stage)
    page = w.page
    page.goto(stage.base_url + "/")
    assert page.url.endswith("/signin")
    page.fill("#api_key", stage.admin_key)
    page.click("button[type=submit]")
    page.wait_for_url("**/tasks")
    assert "Nothing is being watched yet" in page.inner_text("main")
    page.click("text=Create your first task")
    page.fill("#search_query", "next iPhone release date")
    page.fill("#condition_description", "Apple has announced the date")
    page.click("label[for=kind-weekly]")
    page.check("input[name=notify_behavior][value=always]")  # "once" would complete the task
    expect(page.locator("#next-runs")).to_contain_text("(0 9 * * 1,")
    expect(page.locator(".next-runs-list li")).to_have_count(3)
    page.click("button:has-text('Preview')")
    page.wait_for_selector(".verdict")
    verdict = page.inner_text(".verdict")
    assert "Condition met" in verdict
    assert "127.0.0.1" in verdict  # the source, by host
    page.click("button:has-text('Create task')")
    page.wait_for_load_state("networkidle")
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]{36}$"))
    page.click("button:has-text('Run now')")
    page.wait_for_selector("#run-answer", timeout=20_000)
    assert "September 9" in page.inner_text("#run-answer")
    page.wait_for_selector("#history td:has-text('Met')")
    page.click("button:has-text('Pause')")
    page.wait_for_selector("button:has-text('Resume')")
    assert "paused" in page.inner_text("#task-header")
    page.click("button:has-text('Resume')")
    page.wait_for_selector("button:has-text('Pause')")
    page.click(".usermenu summary")
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/signin")
    page.goto(stage.base_url + "/tasks")
    assert "/signin" in page.url
    w.assert_clean()


def test_the_printed_signin_link_works_once(browser: Browser, stage: Stage) -> None:
    first = open_page(browser, stage)
    first.page.goto(stage.signin_link)
    assert first.page.url.endswith("/tasks")
    second = open_page(browser, stage)
    second.page.goto(stage.signin_link)
    assert "/signin" in second.page.url
    assert "used already or has expired" in second.page.inner_text("main")
    first.assert_clean()


def test_sign_in_with_the_identity_provider(
    browser: Browser,
    tmp_path: Path,
    fake_model: FakeOpenAI,
    fake_search: FakeSearxng,
    fake_web: FakeWeb,
    receiver: WebhookReceiver,
    oidc_provider: OpenIDProvider,
) -> None:
    """A server of its own, configured with a local OpenID provider: the button, the provider,
    and back signed in."""
    settings = oidc_provider.settings()
    own = Stage(
        tmp_path,
        fake_model,
        fake_search,
        fake_web,
        receiver,
        extra_env={f"TORALE_{name.upper()}": str(value) for name, value in settings.items()},
    )
    own.start()
    try:
        oidc_provider.redirect_uris = [own.base_url + "/signin/oidc/callback"]
        w = open_page(browser, own)
        w.page.goto(own.base_url + "/tasks")
        w.page.click("text=Sign in with Test ID")
        w.page.wait_for_url("**/tasks")
        assert "idp-user-1@idp.example.com" in w.page.inner_text("body")
        # The only other site the browser went to is the provider's authorize endpoint.
        assert [url.split("?")[0] for url in w.foreign] == [oidc_provider.url + "/authorize"]
        w.foreign.clear()
        w.assert_clean()
    finally:
        own.stop()


def test_create_and_revoke_a_key_and_send_a_webhook_test(browser: Browser, stage: Stage) -> None:
    stage.new_user("kim@example.com")
    w = open_page(browser, stage, accept_dialogs=True)
    page = w.page
    page.goto(stage.link_for("kim@example.com"))
    page.click("nav >> text=Settings")
    page.fill("#key-name", "ci")
    page.click("button:has-text('Create key')")
    key = page.input_value("#new-key")
    assert api_status(stage, key) == 200
    page.goto(stage.base_url + "/settings/api-keys")
    page.click("tr:has-text('ci') >> button:has-text('Revoke')")
    page.wait_for_selector("tr:has-text('ci') >> text=revoked")
    assert api_status(stage, key) == 401
    page.click("text=Webhooks")
    page.fill("#webhook-url", stage.receiver.url + "/hook")
    page.click("button:has-text('Save')")
    page.wait_for_selector("text=Webhook settings saved")
    page.click("button:has-text('Send test')")
    page.wait_for_selector("#test-result .alert")
    assert "Delivered" in page.inner_text("#test-result")
    assert len(stage.receiver.received) == 1
    page.click("button:has-text('Reveal')")
    assert page.get_attribute("#secret", "type") == "text"
    w.assert_clean()


def test_an_admin_deactivates_a_user_whose_open_session_ends(
    browser: Browser, stage: Stage
) -> None:
    stage.new_user("lee@example.com")
    user = open_page(browser, stage)
    user.page.goto(stage.link_for("lee@example.com"))
    assert user.page.url.endswith("/tasks")
    admin = open_page(browser, stage, accept_dialogs=True)
    admin.page.goto(stage.link_for("admin@localhost"))
    admin.page.click("nav >> text=Admin")
    admin.page.click("text=Users")
    admin.page.click("tr:has-text('lee@example.com') >> button:has-text('Deactivate')")
    admin.page.wait_for_selector("tr:has-text('lee@example.com') >> text=deactivated")
    user.page.click("nav >> text=Settings")
    user.page.wait_for_url("**/signin**")
    assert "Sign in to Torale" in user.page.inner_text("main")
    admin.page.click("tr:has-text('lee@example.com') >> button:has-text('Activate')")
    user.assert_clean()
    admin.assert_clean()


HOSTILE = '<script>alert("x")</script><img src="https://evil.example/p.png" onerror="alert(1)">'


def test_hostile_task_text_answers_and_pages_render_inert(browser: Browser, stage: Stage) -> None:
    key = stage.new_user("mo@example.com")
    publish_news(stage, text=HOSTILE + " The date is announced.")
    answer = ToolCall(MET | {"answer": "Release " + HOSTILE, "reasoning": HOSTILE})
    stage.model.script = lambda _request: answer
    task = stage.api(
        key,
        "POST",
        "/api/v1/tasks",
        {
            "name": HOSTILE,
            "search_query": HOSTILE,
            "condition_description": HOSTILE,
            "notifications": [
                {"type": "webhook", "url": "https://example.com/h", "headers": {"X-A": HOSTILE}}
            ],
        },
    )
    stage.api(key, "POST", f"/api/v1/tasks/{task['id']}/execute?wait=true")
    w = open_page(browser, stage)
    w.page.goto(stage.link_for("mo@example.com"))
    for path in (f"/tasks/{task['id']}", "/tasks", f"/tasks/{task['id']}/edit"):
        w.page.goto(stage.base_url + path)
        w.page.wait_for_load_state("networkidle")
        assert w.page.locator("img[src*='evil.example']").count() == 0
        assert w.page.locator("main script").count() == 0
        if path == f"/tasks/{task['id']}":
            shown = w.page.inner_text("main")
            assert 'Release <script>alert("x")</script>' in shown  # shown as text, not run
    w.assert_clean()  # no dialog, no request to evil.example


def test_docs_and_redoc_render_offline(browser: Browser, stage: Stage) -> None:
    w = open_page(browser, stage)
    w.page.goto(stage.base_url + "/docs")
    w.page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert "Torale API" in w.page.inner_text(".swagger-ui .info .title")
    w.page.goto(stage.base_url + "/redoc")
    w.page.wait_for_selector("h1:has-text('Torale API')", timeout=20_000)
    # ReDoc's footer logo came from its maker's CDN; the vendored copy points it nowhere
    # (static/vendor/README.md), so the page asks no other site for anything.
    w.assert_clean()


# The controls of a page that have no label a screen reader could read.
UNLABELLED = """Array.from(document.querySelectorAll(
        'input:not([type=hidden]), select, textarea, button'))
    .filter(c => !(c.labels && c.labels.length) && !c.getAttribute('aria-label')
                 && !(c.tagName === 'BUTTON' && c.textContent.trim()))
    .map(c => c.outerHTML.slice(0, 80))"""


def test_phone_width_keyboard_and_focus(browser: Browser, stage: Stage) -> None:
    w = open_page(browser, stage, width=375)
    page = w.page
    page.goto(stage.link_for("admin@localhost"))
    for path in ("/tasks", "/tasks/new", "/settings/api-keys", "/settings/webhooks", "/manage"):
        page.goto(stage.base_url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 375, (path, overflow)
    # The feeds page as it shows new URLs (long, one per task).
    page.goto(stage.base_url + "/settings/feeds")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("form[action='/settings/feeds/rotate'] button")
    page.wait_for_selector("#feed-all")
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 375, ("/settings/feeds", overflow)
    assert page.evaluate(UNLABELLED) == [], "/settings/feeds with its URLs"
    page.goto(stage.base_url + "/tasks")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    for path in (
        "/tasks/new",
        "/settings/api-keys",
        "/settings/webhooks",
        "/settings/feeds",
        "/tasks",
    ):
        page.goto(stage.base_url + path)
        unlabelled = page.evaluate(UNLABELLED)
        assert unlabelled == [], (path, unlabelled)
    w.assert_clean()


def shop_page(price: str, stock: str) -> str:
    return f"""<html><head><title>Kettle | Example Shop</title></head><body>
<nav>Home · Cart</nav><main><h1>Kettle</h1><div id="offer"><p>{price}</p><p>{stock}</p>
<p>Delivery in 2 days</p></div><p>Free delivery over 20.</p></main></body></html>"""


def test_a_change_task_with_a_selector_from_the_form_to_the_diff_of_its_runs(
    browser: Browser, stage: Stage
) -> None:
    stage.web.set_page("/shop/kettle", shop_page("€59,00", "In stock"))
    url = stage.page_url("/shop/kettle")
    stage.new_user("ria@example.com")
    w = open_page(browser, stage)
    page = w.page
    page.goto(stage.link_for("ria@example.com"))
    page.goto(stage.base_url + "/tasks/new")
    page.click("label:has(#mode-change)")
    expect(page.locator("#search_query")).to_be_hidden()  # the model's fields step aside
    expect(page.locator("#rule_value_0")).to_be_hidden()
    expect(page.locator("#ignore_lines")).to_be_visible()
    page.fill("#url_0", url)
    page.fill("#selector_0", "#offer")
    page.click("button:has-text('Add a page')")  # htmx swaps the rows in place
    expect(page.locator("#url_1")).to_be_focused()
    expect(page.locator("#url_0")).to_have_value(url)
    expect(page.locator("#selector_0")).to_have_value("#offer")
    page.click("button[aria-label='Remove page 2']")
    expect(page.locator("#url_1")).to_have_count(0)
    page.fill("#ignore_lines", "^Delivery in")
    page.click("button:has-text('Preview')")
    page.wait_for_selector(".verdict")
    watched = page.inner_text(".verdict")
    assert "€59,00" in watched
    assert "Free delivery" not in watched  # outside the selector
    page.fill("#name", "Kettle offer")
    page.press("#name", "Enter")  # Enter saves: the form's first submit button is "save"
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]{36}$"))
    details = page.inner_text(".details")
    assert "Page changes" in details
    assert "#offer" in details
    assert "ignoring lines matching /^Delivery in/" in details

    page.click("button:has-text('Run now')")
    page.wait_for_selector("#history td:has-text('Not met')", timeout=20_000)  # the baseline
    hostile = '<script>alert("diff")</script>'
    stage.web.set_page("/shop/kettle", shop_page("€49,00", html.escape(hostile)))
    page.click("button:has-text('Run now')")
    summary = page.locator("#history summary:has-text('Show what changed')")
    summary.wait_for(timeout=20_000)
    expect(summary).to_have_count(1)  # only the run that read something new
    summary.click()
    page.wait_for_selector("#history .diff-add")
    added = page.locator("#history .diff-add").all_inner_texts()
    assert "+€49,00" in added
    assert "+" + hostile in added  # shown as text, never run
    assert "-€59,00" in page.locator("#history .diff-del").all_inner_texts()
    style = "getComputedStyle(document.querySelector('#history .diff-%s')).backgroundColor"
    added_bg, removed_bg = page.evaluate(style % "add"), page.evaluate(style % "del")
    assert "rgba(0, 0, 0, 0)" not in (added_bg, removed_bg)
    assert added_bg != removed_bg
    w.assert_clean()


def test_condition_rows_and_an_error_under_its_row(browser: Browser, stage: Stage) -> None:
    stage.new_user("sol@example.com")
    w = open_page(browser, stage)
    page = w.page
    page.goto(stage.link_for("sol@example.com"))
    page.goto(stage.base_url + "/tasks/new")
    page.click("label:has(#mode-rules)")
    page.fill("#url_0", stage.page_url("/shop/kettle"))
    page.select_option("#rule_op_0", "matches")
    page.fill("#rule_value_0", "Only ([0-9 left")
    page.click("button:has-text('Add a condition')")
    expect(page.locator("#rule_op_1")).to_be_focused()
    page.select_option("#rule_op_1", "<")
    page.fill("#rule_value_1", "50")
    page.click("button:has-text('Create task')")
    expect(page.locator("#rule_0-error")).to_contain_text("Not a regular expression")
    expect(page.locator("#rule_value_1")).to_have_value("50")  # the form kept as typed
    expect(page.locator("#mode-rules")).to_be_checked()
    page.click("button[aria-label='Remove condition 1']")
    expect(page.locator("#rule_op_0")).to_have_value("<")
    page.click("button:has-text('Create task')")
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]{36}$"))
    assert "price < 50" in page.inner_text(".details")
    w.assert_clean()


def test_a_page_read_with_the_browser_and_its_screenshot_on_the_task_page(
    browser: Browser, stage: Stage
) -> None:
    """From the form (the browser and a screenshot chosen) to the run's screenshot shown in the
    answer and in the history, loaded from the session route under the CSP."""
    stage.web.set_page(
        "/app/espresso", js_page("Espresso machine", ["Back in stock.", "It costs 499 euros."])
    )
    stage.new_user("ines@example.com")
    w = open_page(browser, stage)
    page = w.page
    page.goto(stage.link_for("ines@example.com"))
    page.goto(stage.base_url + "/tasks/new")
    page.click("label:has(#mode-change)")
    page.fill("#url_0", stage.page_url("/app/espresso"))
    expect(page.locator("#render-browser")).to_be_enabled()
    page.click("label:has(#render-browser)")
    page.check("#screenshot")
    page.fill("#name", "Espresso app")
    page.click("button:has-text('Create task')")
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]{36}$"))
    page.click("button:has-text('Run now')")
    answer_shot = page.locator("#run-area .shot img")
    answer_shot.wait_for(timeout=30_000)
    history_shot = page.locator("#history .shot img")
    history_shot.wait_for(timeout=20_000)
    for image in (answer_shot, history_shot):
        expect(image).to_have_attribute("alt", re.compile(r"Screenshot of 127\.0\.0\.1"))
        image.scroll_into_view_if_needed()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
    src = history_shot.get_attribute("src")
    assert src is not None
    assert re.fullmatch(r"/tasks/[0-9a-f-]{36}/runs/[0-9a-f-]{36}/screenshots/0", src)
    # The link opens the full PNG, for this session only.
    full = page.request.get(stage.base_url + src)
    assert full.status == 200
    assert full.headers["content-type"] == "image/png"
    assert full.body().startswith(b"\x89PNG")
    assert httpx.get(stage.base_url + src, follow_redirects=False).status_code == 303
    page.reload()  # the saved page shows it too
    expect(page.locator("#run-area .shot img")).to_have_count(1)
    w.assert_clean()
