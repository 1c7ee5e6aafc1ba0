"""The new/edit form's watching part (web/task_form.py, web/watch_form.py): each decision mode
created and edited through the form saves what the API saves for the same request; errors from
the API's schemas land under the row they name; URL and condition rows are added and removed
with and without htmx; previews of change and rules tasks; without a model the model mode is
offered only with what to set."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
import pytest

from tests.fakes import FakeWeb
from tests.fixtures.engine import run_now
from tests.fixtures.users import ApiUser
from tests.fixtures.web import Browserless, api_task, form_values

pytestmark = pytest.mark.timeout(60)

# What the API decides itself (ids, times) or from the clock (the next run).
_OWN = {"id", "created_at", "updated_at", "state_changed_at", "next_run", "last_execution"}

BASE_FORM = {
    "schedule_kind": "daily",
    "daily_at": "07:30",
    "timezone": "Europe/Berlin",
    "notify_behavior": "always",
    "emails": "me@example.com",
}
BASE_BODY = {
    "schedule": "30 7 * * *",
    "timezone": "Europe/Berlin",
    "notify_behavior": "always",
    "notifications": [{"type": "email", "address": "me@example.com"}],
}


def shop(price: str, stock: str = "In stock", *, note: str = "") -> str:
    return f"""<html><head><title>Shop</title></head><body><nav>Home · session 81723</nav>
<main><h1>Espresso machine</h1><div id="offer"><p class="price">{price}</p>
<p class="stock">{stock}</p><p>{note}</p></div><p>Free delivery over 20.</p></main></body></html>"""


async def espresso_watch(as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb) -> Any:
    """A change task (made through the API) watching the espresso page's `#offer` at $59.00."""
    fake_web.set_page("/espresso", shop("$59.00"))
    return await api_task(
        as_alice.client,
        alice,
        search_query=None,
        condition_description=None,
        urls=[{"url": fake_web.url + "/espresso", "selector": "#offer"}],
    )


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any], request: pytest.FixtureRequest) -> Any:
    """The web tests' settings, changed by indirect parametrisation (`{"model": None}`)."""
    return settings_overrides | getattr(request, "param", {})


async def _tasks(client: httpx.AsyncClient, user: ApiUser) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/tasks", headers=user.headers)
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _task(client: httpx.AsyncClient, user: ApiUser, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/tasks/{task_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def _saved(task: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in task.items() if k not in _OWN}


async def _created_by_form(as_alice: Browserless, form: dict[str, str]) -> dict[str, Any]:
    response = await as_alice.post("/tasks/new", form)
    assert response.status_code == 303, re.findall(
        r'class="field-error"[^>]*>([^<]+)', response.text
    )
    task_id = response.headers["location"].rsplit("/", 1)[1]
    return await _task(as_alice.client, as_alice.user, task_id)


def _cases(page: str) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """(mode, the form as typed, the API request that means the same)."""
    return [
        (
            "model",
            {
                "mode": "model",
                "search_query": "espresso machine price",
                "condition_description": "It costs less than 50",
                "url_0": page,
                "selector_0": "#offer",
                "url_1": "",
                "selector_1": "",
            },
            {
                "mode": "model",
                "search_query": "espresso machine price",
                "condition_description": "It costs less than 50",
                "urls": [{"url": page, "selector": "#offer"}],
            },
        ),
        (
            "change",
            {
                "mode": "change",
                "search_query": "typed before switching mode: not sent",
                "url_0": page,
                "selector_0": "xpath://div[@id='offer']",
                "url_1": page + "?all",
                "selector_1": "",
                "ignore_lines": "^Updated .* ago$\n\n  session \\d+  \n",
                "change_only": "additions",
            },
            {
                "mode": "change",
                "urls": [{"url": page, "selector": "xpath://div[@id='offer']"}, page + "?all"],
                "change": {
                    "ignore_lines": ["^Updated .* ago$", "session \\d+"],
                    "only": "additions",
                },
            },
        ),
        (
            "rules",
            {
                "mode": "rules",
                "name": "Espresso under 50",
                "url_0": page,
                "selector_0": ".price",
                "rules_match": "any",
                "rule_op_0": "<",
                "rule_value_0": "49.5",
                "rule_op_1": "contains",
                "rule_value_1": "In stock",
                "rule_op_2": "drop_pct",
                "rule_value_2": "",  # an empty row is no condition
                "rule_op_3": "matches",
                "rule_value_3": r"Only \d+ left",
            },
            {
                "mode": "rules",
                "name": "Espresso under 50",
                "urls": [{"url": page, "selector": ".price"}],
                "rules": {
                    "match": "any",
                    "conditions": [
                        {"kind": "number", "op": "<", "value": 49.5},
                        {"kind": "text", "op": "contains", "value": "In stock"},
                        {"kind": "text", "op": "matches", "value": r"Only \d+ left"},
                    ],
                },
            },
        ),
    ]


@pytest.mark.parametrize("mode", ["model", "change", "rules"])
async def test_each_mode_created_through_the_form_is_what_the_api_saves(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb, mode: str
) -> None:
    page = fake_web.url + "/espresso"
    [(_, form, body)] = [c for c in _cases(page) if c[0] == mode]
    by_form = await _created_by_form(as_alice, BASE_FORM | form)
    no_query = {} if mode == "model" else {"search_query": None, "condition_description": None}
    by_api = await api_task(as_alice.client, alice, **BASE_BODY | no_query | body)
    assert _saved(by_form) == _saved(by_api)
    assert by_form["mode"] == mode


@pytest.mark.parametrize("mode", ["model", "change", "rules"])
async def test_each_mode_edited_through_the_form_is_what_the_api_saves(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb, mode: str
) -> None:
    """A model task edited into each mode, side by side with the same PATCH through the API;
    then the edit form as shown, submitted unchanged, changes nothing."""
    page = fake_web.url + "/espresso"
    [(_, form, body)] = [c for c in _cases(page) if c[0] == mode]
    start = {"search_query": "espresso", "urls": [page + "?old"], **BASE_BODY}
    edited = await api_task(as_alice.client, alice, **start)
    patched = await api_task(as_alice.client, alice, **start)

    path = f"/tasks/{edited['id']}/edit"
    shown = form_values((await as_alice.get(path)).text, path)
    assert (shown["mode"], shown["url_0"]) == ("model", page + "?old")
    response = await as_alice.post(
        path, {k: v for k, v in shown.items() if not k.startswith(("url_", "selector_"))} | form
    )
    assert response.status_code == 303, response.text
    if "name" not in body:
        body = body | {"name": edited["name"]}  # an empty name keeps the task's
    if mode != "model":
        body = body | {"rules": body.get("rules"), "change": body.get("change")}
    update = await as_alice.client.patch(
        f"/api/v1/tasks/{patched['id']}", json=body, headers=alice.headers
    )
    assert update.status_code == 200, update.text
    after_form = await _task(as_alice.client, alice, edited["id"])
    assert _saved(after_form) == _saved(update.json())

    unchanged = await as_alice.post(path, form_values((await as_alice.get(path)).text, path))
    assert unchanged.status_code == 303, unchanged.text
    assert _saved(await _task(as_alice.client, alice, edited["id"])) == _saved(after_form)


async def test_the_edit_form_shows_a_rules_task_as_saved(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> None:
    task = await api_task(
        as_alice.client,
        alice,
        search_query=None,
        condition_description=None,
        urls=[{"url": fake_web.url + "/p", "selector": "json:$.item.price"}],
        rules={
            "match": "any",
            "conditions": [
                {"kind": "number", "op": "drop_pct", "value": 12.5},
                {"kind": "number", "op": ">=", "value": 1299},
            ],
        },
    )
    shown = form_values(
        (await as_alice.get(f"/tasks/{task['id']}/edit")).text, f"/tasks/{task['id']}/edit"
    )
    assert shown["mode"] == "rules"
    assert shown["selector_0"] == "json:$.item.price"
    assert (shown["rules_match"], shown["rule_op_0"], shown["rule_value_0"]) == (
        "any",
        "drop_pct",
        "12.5",
    )
    assert (shown["rule_op_1"], shown["rule_value_1"]) == (">=", "1299")


# --- errors under their rows ------------------------------------------------------------------


def _error(text: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="{re.escape(field)}-error">([^<]*)</p>', text)
    assert found, (field, re.findall(r'id="([^"]+)-error"', text))
    return html.unescape(found.group(1))


async def test_a_bad_selector_is_refused_under_its_row(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> None:
    form = BASE_FORM | {
        "mode": "change",
        "url_0": "",  # an empty first row: the error still lands on the row that has it
        "selector_0": "",
        "url_1": fake_web.url + "/p",
        "selector_1": "xpath://div[[",
        "url_2": "",
        "selector_2": "#price",
    }
    response = await as_alice.post("/tasks/new", form)
    assert response.status_code == 422
    assert "XPath" in _error(response.text, "selector_1")
    assert 'id="selector_1" name="selector_1" class="mono" value="xpath://div[["' in response.text
    assert "at least 1 character" in _error(response.text, "url_2")  # a selector without a page
    assert 'aria-invalid="true" aria-describedby="selector_1-error"' in response.text
    assert await _tasks(as_alice.client, alice) == []


async def test_bad_regexes_and_number_conditions_are_refused_under_their_rows(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> None:
    form = BASE_FORM | {
        "mode": "rules",
        "url_0": fake_web.url + "/p",
        "rule_op_0": "matches",
        "rule_value_0": "Only ([0-9 left",
        "rule_op_1": "<",
        "rule_value_1": "",  # skipped: the errors below keep their own rows
        "rule_op_2": "<",
        "rule_value_2": "cheap",
        "rule_op_3": "drop_pct",
        "rule_value_3": "150",
        "rule_op_4": "~",  # not an operator
        "rule_value_4": "3",
    }
    response = await as_alice.post("/tasks/new", form)
    assert response.status_code == 422
    text = response.text
    assert "Not a regular expression" in _error(text, "rule_0")
    assert 'id="rule_1-error"' not in text
    assert "valid number" in _error(text, "rule_2")
    assert "at most 100" in _error(text, "rule_3")
    assert "Input should be" in _error(text, "rule_4")
    assert 'value="Only ([0-9 left"' in text  # kept as typed
    change = await as_alice.post(
        "/tasks/new",
        BASE_FORM
        | {"mode": "change", "url_0": fake_web.url + "/p", "ignore_lines": "fine\n(unclosed"},
    )
    assert change.status_code == 422
    assert _error(change.text, "ignore_lines").startswith("Line 2: Not a regular expression")
    assert await _tasks(as_alice.client, alice) == []


async def test_what_a_mode_needs_is_asked_for_at_its_field(as_alice: Browserless) -> None:
    no_pages = await as_alice.post("/tasks/new", BASE_FORM | {"mode": "change", "url_0": ""})
    assert "watches the task's urls" in _error(no_pages.text, "urls")
    no_rules = await as_alice.post(
        "/tasks/new",
        BASE_FORM | {"mode": "rules", "url_0": "https://example.com/", "rule_value_0": ""},
    )
    assert "Mode rules needs rules" in _error(no_rules.text, "rules")
    no_query = await as_alice.post("/tasks/new", BASE_FORM | {"mode": "model"})
    assert "required" in _error(no_query.text, "search_query")


# --- rows added and removed -------------------------------------------------------------------


async def test_url_rows_are_added_and_removed_without_javascript(
    as_alice: Browserless, alice: ApiUser
) -> None:
    typed = BASE_FORM | {
        "mode": "change",
        "name": "kept",
        "url_0": "https://a.example/",
        "selector_0": "#a",
    }
    added = await as_alice.post("/tasks/new", typed | {"_action": "add-url"})
    assert added.status_code == 200  # the form again, nothing saved
    shown = form_values(added.text, "/tasks/new")
    assert (shown["url_0"], shown["selector_0"], shown["url_1"]) == ("https://a.example/", "#a", "")
    assert shown["name"] == "kept"
    assert re.search(r'id="url_1"[^>]*autofocus', added.text)
    two = shown | {"url_1": "https://b.example/", "_action": "add-url"}
    three = form_values((await as_alice.post("/tasks/new", two)).text, "/tasks/new")
    removed = await as_alice.post("/tasks/new", three | {"_action": "remove-url:0"})
    left = form_values(removed.text, "/tasks/new")
    assert [left.get(f"url_{i}") for i in range(3)] == ["https://b.example/", "", None]
    assert re.search(r'id="add-url"[^>]*autofocus', removed.text)
    assert await _tasks(as_alice.client, alice) == []


async def test_condition_rows_are_added_and_removed_with_htmx(as_alice: Browserless) -> None:
    typed = BASE_FORM | {
        "mode": "rules",
        "rule_op_0": "<",
        "rule_value_0": "50",
        "rule_op_1": "contains",
        "rule_value_1": "In stock",
    }
    added = await as_alice.post("/tasks/new", typed | {"_action": "add-rule"}, htmx=True)
    assert added.status_code == 200
    assert "<html" not in added.text  # the rows only, swapped in place
    assert added.text.lstrip().startswith('<fieldset class="rows" id="rule-rows">')
    assert re.search(r'id="rule_op_2"[^>]*autofocus', added.text)
    assert 'name="rule_value_0" value="50"' in added.text
    removed = await as_alice.post("/tasks/new", typed | {"_action": "remove-rule:0"}, htmx=True)
    assert 'name="rule_value_0" value="In stock"' in removed.text
    assert 'name="rule_value_1"' not in removed.text
    last = await as_alice.post(
        "/tasks/new",
        {"rule_op_0": "<", "rule_value_0": "50", "_action": "remove-rule:0"},
        htmx=True,
    )
    assert 'name="rule_value_0" value=""' in last.text  # one empty row stays
    full = {f"rule_value_{i}": str(i) for i in range(19)}
    at_most = await as_alice.post("/tasks/new", full | {"_action": "add-rule"}, htmx=True)
    assert 'name="rule_value_19"' in at_most.text
    assert 'value="add-rule"' not in at_most.text  # 20 conditions: the API's limit


async def test_rows_change_on_the_edit_form_too_and_another_users_is_404(
    as_alice: Browserless, as_bob: Browserless, alice: ApiUser
) -> None:
    task = await api_task(as_alice.client, alice)
    path = f"/tasks/{task['id']}/edit"
    added = await as_alice.post(path, {"_action": "add-url"}, htmx=True)
    assert added.status_code == 200
    assert 'hx-post="' + path + '"' in added.text
    assert (await as_bob.post(path, {"_action": "add-url"}, htmx=True)).status_code == 404


# --- without a model --------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"model": None}], indirect=True)
async def test_without_a_model_the_model_mode_says_what_to_set(
    as_alice: Browserless, alice: ApiUser
) -> None:
    page = await as_alice.get("/tasks/new")
    assert re.search(r'id="mode-model"[^>]*disabled', page.text)
    assert re.search(r'id="mode-change"[^>]*checked', page.text)  # what works is the default
    assert "TORALE_MODEL" in page.text
    forced = await as_alice.post(
        "/tasks/new", BASE_FORM | {"mode": "model", "search_query": "iphone"}
    )
    assert forced.status_code == 422
    assert "No model is configured" in _error(forced.text, "mode")
    assert await _tasks(as_alice.client, alice) == []


async def test_with_a_model_every_mode_is_offered(as_alice: Browserless) -> None:
    page = await as_alice.get("/tasks/new")
    for mode in ("model", "change", "rules"):
        assert re.search(
            rf'<input type="radio" id="mode-{mode}" name="mode" value="{mode}" ?[^>]*>', page.text
        )
    assert not re.search(r'id="mode-model"[^>]*disabled', page.text)
    assert re.search(r'id="mode-model"[^>]*checked', page.text)
    assert "TORALE_MODEL" not in page.text


# --- preview ----------------------------------------------------------------------------------


async def test_preview_of_a_change_task_shows_the_selected_text(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/espresso", shop("$59.00"))
    form = BASE_FORM | {
        "mode": "change",
        "url_0": fake_web.url + "/espresso",
        "selector_0": "#offer",
    }
    response = await as_alice.post("/tasks/preview", form, htmx=True)
    assert response.status_code == 200
    assert "What Torale will watch" in response.text
    assert "$59.00" in response.text
    assert "Free delivery" not in response.text  # outside the selector
    assert "no model used" in response.text
    assert await _tasks(as_alice.client, alice) == []
    bad = await as_alice.post("/tasks/preview", form | {"selector_0": "xpath://[["}, htmx=True)
    assert "<strong>Page 1 selector:</strong>" in bad.text


async def test_an_edit_preview_compares_with_the_tasks_last_run(
    as_alice: Browserless, as_bob: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> None:
    task = await espresso_watch(as_alice, alice, fake_web)
    await run_now(as_alice.client, alice, task["id"])  # what the next run compares with
    edit = await as_alice.get(f"/tasks/{task['id']}/edit")
    assert f'hx-post="/tasks/preview?task_id={task["id"]}"' in edit.text
    form = BASE_FORM | {
        "mode": "change",
        "url_0": fake_web.url + "/espresso",
        "selector_0": "#offer",
    }
    same = await as_alice.post(f"/tasks/preview?task_id={task['id']}", form, htmx=True)
    assert "No change since the last run" in same.text
    fake_web.set_page("/espresso", shop("$49.00"))
    changed = await as_alice.post(f"/tasks/preview?task_id={task['id']}", form, htmx=True)
    assert "Changed since the last run" in changed.text
    assert re.search(r'class="diff-line diff-del">-[^<]*\$59\.00', changed.text)
    assert re.search(r'class="diff-line diff-add">\+[^<]*\$49\.00', changed.text)
    # Nothing saved: the task's history still holds its one run.
    runs = await as_alice.client.get(
        f"/api/v1/tasks/{task['id']}/executions", headers=alice.headers
    )
    assert runs.json()["total"] == 1
    # Another user's task is not there for bob to compare with.
    theirs = await as_bob.post(f"/tasks/preview?task_id={task['id']}", form, htmx=True)
    assert "The preview could not run: Task not found" in theirs.text


async def test_preview_of_a_rules_task_shows_each_condition(
    as_alice: Browserless, fake_web: FakeWeb
) -> None:
    fake_web.set_page("/espresso", shop("1.299,00 €"))
    form = BASE_FORM | {
        "mode": "rules",
        "url_0": fake_web.url + "/espresso",
        "selector_0": "#offer",
        "rule_op_0": "<",
        "rule_value_0": "1500",
        "rule_op_1": "not_contains",
        "rule_value_1": "Sold out",
    }
    response = await as_alice.post("/tasks/preview", form, htmx=True)
    assert "Condition met" in response.text
    assert re.search(r'class="check-ok">.*price &lt; 1500 \(it is 1299\)', response.text)
    assert re.search(
        r'class="check-ok">.*the text does not contain &#39;Sold out&#39;', response.text
    )
    missed = await as_alice.post("/tasks/preview", form | {"rule_value_0": "1000"}, htmx=True)
    assert "Not met yet" in missed.text
    assert re.search(r'class="check-no">.*price &lt; 1000', missed.text)


# --- the task page ----------------------------------------------------------------------------


async def test_the_task_page_says_the_mode_and_rules_in_words(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> None:
    rules = await api_task(
        as_alice.client,
        alice,
        search_query=None,
        condition_description=None,
        urls=[{"url": fake_web.url + "/p", "selector": ".price"}],
        rules={
            "match": "all",
            "conditions": [
                {"kind": "number", "op": "<", "value": 50},
                {"kind": "text", "op": "contains", "value": "In stock"},
            ],
        },
    )
    page = (await as_alice.get(f"/tasks/{rules['id']}")).text
    assert "<dd>Rules</dd>" in page
    assert "price &lt; 50 and the text contains “In stock”" in page
    assert "<code>.price</code>" in page
    change = await api_task(
        as_alice.client,
        alice,
        search_query=None,
        condition_description=None,
        urls=[fake_web.url + "/p"],
        change={"ignore_lines": ["^Updated"], "only": "additions"},
    )
    page = (await as_alice.get(f"/tasks/{change['id']}")).text
    assert "<dd>Page changes</dd>" in page
    assert "the watched text changes" in page
    assert "only additions; ignoring lines matching /^Updated/" in page
    listing = (await as_alice.get("/tasks")).text
    assert "When price &lt; 50 and the text contains “In stock”" in listing


HOSTILE = '<script>alert("diff")</script><img src=x onerror="alert(2)">'


async def test_a_runs_diff_opens_in_place_and_renders_escaped(
    as_alice: Browserless, as_bob: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> None:
    task = await espresso_watch(as_alice, alice, fake_web)
    first = await run_now(as_alice.client, alice, task["id"])  # the baseline
    unchanged = await run_now(as_alice.client, alice, task["id"])
    fake_web.set_page("/espresso", shop("$49.00", note=html.escape(HOSTILE)))  # text, not tags
    changed = await run_now(as_alice.client, alice, task["id"])
    assert changed["condition_met"] is True
    history = (await as_alice.get(f"/tasks/{task['id']}")).text
    links = re.findall(r'href="(/tasks/[^"]+/diff\?from=([^&]+)&amp;to=([^"]+))"', history)
    # Only the run that read something new, compared with the run before it.
    assert [(f, t) for _, f, t in links] == [(unchanged["id"], changed["id"])]
    url = links[0][0].replace("&amp;", "&")

    inline = await as_alice.get(url, headers={"HX-Request": "true"})
    assert inline.status_code == 200
    assert "<html" not in inline.text
    page = await as_alice.get(url)
    assert "<html" in page.text
    for text in (inline.text, page.text):
        assert '<span class="diff-line diff-del">-$59.00</span>' in text
        assert '<span class="diff-line diff-add">+$49.00</span>' in text
        assert "<script>alert" not in text
        assert "<img src=x" not in text
        assert "+&lt;script&gt;alert(&#34;diff&#34;)&lt;/script&gt;" in text
        assert not re.search(r"<[^>]*\s(style|on[a-z]+)\s*=", text)  # the CSP allows neither
    assert (await as_bob.get(url)).status_code == 404
    other = f"/tasks/{task['id']}/diff?from={first['id']}&to=not-a-run"
    assert (await as_alice.get(other)).status_code == 404


@pytest.mark.parametrize("settings_overrides", [{"browser_path": "chromium"}], indirect=True)
async def test_editing_keeps_how_each_page_is_read(
    as_alice: Browserless, alice: ApiUser, fake_web: FakeWeb
) -> None:
    """The rows have no control for a page's own `render` (the form offers the task's): a page
    read with the browser stays so when the task is edited (a hidden field carries it), also
    when another row is removed."""
    task = await api_task(
        as_alice.client,
        alice,
        search_query=None,
        condition_description=None,
        urls=[
            fake_web.url + "/plain",
            {"url": fake_web.url + "/app", "selector": "#price", "render": "browser"},
        ],
    )
    path = f"/tasks/{task['id']}/edit"
    shown = form_values((await as_alice.get(path)).text, path)
    assert shown["render_1"] == "browser"
    assert "render_0" not in shown
    removed = await as_alice.post(path, shown | {"_action": "remove-url:0"})
    assert removed.status_code == 200, removed.text
    shown = form_values(removed.text, path)
    assert (shown["url_0"], shown["render_0"]) == (fake_web.url + "/app", "browser")
    saved = await as_alice.post(path, shown | {"name": "Espresso app"})
    assert saved.status_code == 303, saved.text
    after = await _task(as_alice.client, alice, task["id"])
    assert after["name"] == "Espresso app"
    assert after["targets"] == [
        {"url": fake_web.url + "/app", "selector": "#price", "render": "browser"}
    ]
