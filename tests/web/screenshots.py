"""`make screenshots`: every page of the web app at 1280 px and 375 px, light and dark, into
docs/screenshots/. Runs a real `torale serve` against local fakes (tests/web/stage.py) and
Debian's Chromium (TORALE_TEST_CHROMIUM, default /usr/bin/chromium); the sign-in page with an
identity provider's button (`signin-oidc`) on a second server configured with the local OpenID
provider (tests/fixtures/oidc_provider.py).

`make screenshots PAGES="signin-oidc settings-feeds"` (or `python -m tests.web.screenshots
NAME …`) writes only the pictures with those names; the pages are visited all the same."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from tests.fixtures.browser import js_page
from tests.fixtures.engine import MET
from tests.fixtures.jwks import new_key
from tests.fixtures.oidc_provider import running_provider
from tests.web.stage import CHROMIUM, Stage, stage

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDTHS = {"desktop": (1280, 860), "phone": (375, 780)}
# The pictures to write (by name, e.g. "signin"); empty: all of them.
ONLY: set[str] = set()


def seed(s: Stage) -> dict[str, str]:
    """Tasks with history for the admin; returns ids by name."""
    key = s.admin_key
    newsroom = s.publish(
        "/newsroom/iphone", "Apple Newsroom", "Apple announced the iPhone 18 for September 9."
    )
    blog = s.publish("/blog/rust", "Rust Blog", "The team has not set a date for the next edition.")
    s.search.set_results(
        "iphone",
        [(newsroom, "Apple announces iPhone 18", "The iPhone 18 arrives September 9.")],
    )
    s.search.set_results("rust", [(blog, "Rust Blog", "Planning the next edition")])
    s.search.set_results(None, [(blog, "Rust Blog", "Planning")])
    ids: dict[str, str] = {}
    specs = [
        (
            "iPhone 18 release date",
            "next iPhone release date",
            "Apple has announced the date",
            "0 9 * * *",
        ),
        ("Rust 2027 edition", "rust 2027 edition", "The release date is announced", "0 */6 * * *"),
        (
            "Berlin marathon entries",
            "berlin marathon registration",
            "Registration is open",
            "30 8 * * 1",
        ),
        (
            "Status page incidents",
            "status example incident",
            "There is an open incident",
            "0 * * * *",
        ),
    ]
    for name, query, condition, cron in specs:
        task = s.api(
            key,
            "POST",
            "/api/v1/tasks",
            {
                "name": name,
                "search_query": query,
                "condition_description": condition,
                "schedule": cron,
                "timezone": "Europe/Berlin",
                "notify_behavior": "track_state",
                "notifications": [{"type": "webhook", "url": s.receiver.url + "/hook"}],
            },
        )
        ids[name] = task["id"]
    for name in ("iPhone 18 release date", "Rust 2027 edition", "Rust 2027 edition"):
        s.api(key, "POST", f"/api/v1/tasks/{ids[name]}/execute?wait=true")
    s.model.fail_next(1, status=500)
    s.api(key, "POST", f"/api/v1/tasks/{ids['Status page incidents']}/execute?wait=true")
    s.api(key, "PATCH", f"/api/v1/tasks/{ids['Berlin marathon entries']}", {"state": "paused"})
    s.api(key, "PUT", "/api/v1/webhooks/config", {"url": s.receiver.url + "/all"})
    s.new_user("dana@example.com")
    ids.update(seed_watching(s))
    return ids


def shop(price: str, stock: str) -> str:
    return f"""<html><head><title>Espresso machine | Example Shop</title></head><body>
<nav>Home · Coffee · Cart (session 81723)</nav><main><h1>Lelit Anna espresso machine</h1>
<div id="offer"><p class="price">{price}</p><p class="stock">{stock}</p>
<p class="delivery">Delivery in 2 to 3 days</p></div>
<p>Free delivery on orders over €20.</p></main><footer>Example Shop</footer></body></html>"""


def seed_watching(s: Stage) -> dict[str, str]:
    """A change task whose page changed between its runs (so its history has a diff) and a
    rules task: pages watched without a model."""
    key = s.admin_key
    s.web.set_page("/shop/espresso", shop("€1.249,00", "In stock"))
    page = s.page_url("/shop/espresso")
    change = s.api(
        key,
        "POST",
        "/api/v1/tasks",
        {
            "name": "Espresso machine offer",
            "urls": [{"url": page, "selector": "#offer"}],
            "mode": "change",
            "change": {"ignore_lines": ["^Delivery in"]},
            "schedule": "0 */6 * * *",
            "timezone": "Europe/Berlin",
            "notify_behavior": "always",
            "notifications": [{"type": "webhook", "url": s.receiver.url + "/hook"}],
        },
    )
    s.api(key, "POST", f"/api/v1/tasks/{change['id']}/execute?wait=true")
    s.web.set_page("/shop/espresso", shop("€1.149,00", "Only 2 left"))
    s.api(key, "POST", f"/api/v1/tasks/{change['id']}/execute?wait=true")
    rules = s.api(
        key,
        "POST",
        "/api/v1/tasks",
        {
            "name": "Espresso machine under €1,200",
            "urls": [{"url": page, "selector": ".price"}],
            "rules": {
                "match": "all",
                "conditions": [{"kind": "number", "op": "<", "value": 1200}],
            },
            "schedule": "0 9 * * *",
            "timezone": "Europe/Berlin",
            "notify_behavior": "once",
        },
    )
    s.api(key, "POST", f"/api/v1/tasks/{rules['id']}/execute?wait=true")
    return {"change": change["id"], "rules": rules["id"], "browser": seed_browser(s)}


def seed_browser(s: Stage) -> str:
    """A shop page whose offer JavaScript writes, read with the browser and a screenshot
    kept, twice (the stock changed in between)."""
    key = s.admin_key
    story = ["Lelit Anna espresso machine", "€1.149,00", "In stock: ships tomorrow"]
    s.web.set_page("/app/espresso", js_page("Espresso machine | Example Shop", story))
    task = s.api(
        key,
        "POST",
        "/api/v1/tasks",
        {
            "name": "Espresso machine (shop app)",
            "urls": [s.page_url("/app/espresso")],
            "mode": "change",
            "render": "browser",
            "screenshot": True,
            "schedule": "0 */6 * * *",
            "timezone": "Europe/Berlin",
            "notify_behavior": "always",
        },
    )
    s.api(key, "POST", f"/api/v1/tasks/{task['id']}/execute?wait=true")
    story[2] = "Only 2 left"
    s.web.set_page("/app/espresso", js_page("Espresso machine | Example Shop", story))
    s.api(key, "POST", f"/api/v1/tasks/{task['id']}/execute?wait=true")
    task_id: str = task["id"]
    return task_id


def new_watch_forms(page: Page, s: Stage, variant: str) -> None:
    """The form in its two modes that need no model, each with a preview."""
    url = s.page_url("/shop/espresso")
    page.goto(s.base_url + "/tasks/new")
    page.click("label:has(#mode-change)")
    page.fill("#url_0", url)
    page.fill("#selector_0", "#offer")
    page.fill("#ignore_lines", "^Delivery in")
    page.fill("#name", "Espresso machine offer")
    page.click("button:has-text('Preview')")
    page.wait_for_selector(".verdict")
    shoot(page, "task-new-change", variant)
    page.goto(s.base_url + "/tasks/new")
    page.click("label:has(#mode-rules)")
    page.fill("#url_0", url)
    page.fill("#selector_0", "#offer")
    page.select_option("#rule_op_0", "<")
    page.fill("#rule_value_0", "1200")
    page.click("button:has-text('Add a condition')")
    page.wait_for_selector("#rule_op_1")
    page.select_option("#rule_op_1", "not_contains")
    page.fill("#rule_value_1", "Sold out")
    page.click("button:has-text('Preview')")
    page.wait_for_selector(".verdict")
    shoot(page, "task-new-rules", variant)


def shoot(page: Page, name: str, variant: str) -> None:
    if ONLY and name not in ONLY:
        return
    page.wait_for_load_state("networkidle")
    page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar at the top of the picture
    page.screenshot(path=str(OUT / f"{name}-{variant}.png"), full_page=True)


def capture(browser: Browser, s: Stage, ids: dict[str, str], size: str, scheme: str) -> None:
    width, height = WIDTHS[size]
    variant = f"{width}" + ("-dark" if scheme == "dark" else "")
    context = browser.new_context(
        viewport={"width": width, "height": height},
        color_scheme=scheme,  # type: ignore[arg-type]
        timezone_id="Europe/Berlin",
        locale="en-GB",
    )
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Make new feed URLs?" after the first
    page.goto(s.base_url + "/signin")
    shoot(page, "signin", variant)
    page.fill("#api_key", s.admin_key)
    page.click("button[type=submit]")
    page.wait_for_url("**/tasks")
    shoot(page, "tasks", variant)
    page.goto(s.base_url + "/tasks/new")
    page.fill("#search_query", "next iPhone release date")
    page.fill("#condition_description", "Apple has announced the date")
    page.click("label[for=kind-weekly]")
    page.click("button:has-text('Preview')")
    page.wait_for_selector(".verdict")
    shoot(page, "task-new", variant)
    new_watch_forms(page, s, variant)
    page.goto(s.base_url + f"/tasks/{ids['iPhone 18 release date']}")
    shoot(page, "task", variant)
    page.goto(s.base_url + f"/tasks/{ids['change']}")
    page.click("summary:has-text('Show what changed')")
    page.wait_for_selector(".diff-line")
    shoot(page, "task-change", variant)
    page.goto(s.base_url + f"/tasks/{ids['rules']}")
    shoot(page, "task-rules", variant)
    page.goto(s.base_url + f"/tasks/{ids['browser']}")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # the lazy thumbnails load
    page.wait_for_function(
        "() => [...document.querySelectorAll('.shot img')].every(i => i.complete && i.naturalWidth)"
    )
    shoot(page, "task-browser", variant)
    page.goto(s.base_url + "/settings/api-keys")
    page.fill("#key-name", "laptop")
    page.click("button:has-text('Create key')")
    shoot(page, "settings-api-keys", variant)
    page.goto(s.base_url + "/settings/webhooks")
    page.click("button:has-text('Send test')")
    page.wait_for_selector("#test-result .alert")
    shoot(page, "settings-webhooks", variant)
    page.goto(s.base_url + "/settings/feeds")
    page.click("form[action='/settings/feeds/rotate'] button")
    page.wait_for_selector("#feed-all")
    shoot(page, "settings-feeds", variant)
    for path, name in (
        ("/manage", "admin"),
        ("/manage/users", "admin-users"),
        ("/manage/errors", "admin-errors"),
        ("/manage/runs", "admin-runs"),
    ):
        page.goto(s.base_url + path)
        shoot(page, name, variant)
    context.close()
    # A new user's first page: the empty state.
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(s.link_for("dana@example.com"))
    shoot(page, "tasks-empty", variant)
    context.close()


def capture_provider_signin(browser: Browser, s: Stage, size: str, scheme: str) -> None:
    width, height = WIDTHS[size]
    variant = f"{width}" + ("-dark" if scheme == "dark" else "")
    context = browser.new_context(
        viewport={"width": width, "height": height},
        color_scheme=scheme,  # type: ignore[arg-type]
        locale="en-GB",
    )
    page = context.new_page()
    page.goto(s.base_url + "/signin")
    page.wait_for_selector(".signin-provider")
    shoot(page, "signin-oidc", variant)
    context.close()


def with_provider(browser: Browser, s: Stage, data_dir: Path) -> None:
    """A second server, with sign-in through the local OpenID provider: its sign-in page."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with running_provider(new_key("screenshots")) as provider:
        settings = provider.settings() | {"oidc_name": "Example SSO"}
        own = Stage(
            data_dir,
            s.model,
            s.search,
            s.web,
            s.receiver,
            extra_env={f"TORALE_{name.upper()}": str(value) for name, value in settings.items()},
        )
        own.start()
        try:
            provider.redirect_uris = [own.base_url + "/signin/oidc/callback"]
            for size in ("desktop", "phone"):
                for scheme in ("light", "dark"):
                    capture_provider_signin(browser, own, size, scheme)
        finally:
            own.stop()


def main(names: list[str]) -> int:
    ONLY.update(names)
    OUT.mkdir(parents=True, exist_ok=True)
    reads_js = {"TORALE_BROWSER_PATH": CHROMIUM}  # pages read with it: the task-browser picture
    with tempfile.TemporaryDirectory() as tmp, stage(Path(tmp) / "data", reads_js) as s:
        s.answer(
            [("iPhone", MET)],
            MET
            | {
                "condition_met": False,
                "answer": "No date yet: the Rust team is still planning the edition.",
            },
        )
        ids = seed(s)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            for size in ("desktop", "phone"):
                for scheme in ("light", "dark"):
                    capture(browser, s, ids, size, scheme)
            if not ONLY or "signin-oidc" in ONLY:
                with_provider(browser, s, Path(tmp) / "with-provider")
            browser.close()
    print(f"screenshots written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
