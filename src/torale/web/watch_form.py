"""The watching part of the new/edit task form: the decision mode, URL rows (each with an
optional selector), change filters and rules rows. Read from a posted form or a saved task and
turned into the API's shapes; validation stays the API's (the task schemas and service), and
the rows its errors name are found again from the entries sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torale.tasks.schemas import TaskRead

# The API takes at most 20 URLs and 20 conditions (tasks/schemas.py); the form offers as many.
MAX_ROWS = 20
_MAX_CHARS = 5000

MODES = (
    ("model", "AI model", "Searches the web and judges a condition written in plain words."),
    ("change", "Page changes", "Tells you when a page's watched text changes. No model needed."),
    (
        "rules",
        "Rules",
        "Tells you when a phrase appears or a price crosses a line. No model needed.",
    ),
)
NO_MODEL_HINT = (
    "No model is configured on this server. To let a model judge conditions, set TORALE_MODEL "
    "(with the provider's key, e.g. OPENAI_API_KEY) and restart Torale."
)
TEXT_OPS = (
    ("contains", "Text contains"),
    ("not_contains", "Text does not contain"),
    ("matches", "Text matches the regex"),
)
NUMBER_OPS = (
    ("<", "Price is below"),
    ("<=", "Price is at most"),
    (">", "Price is above"),
    (">=", "Price is at least"),
    ("==", "Price equals"),
    ("!=", "Price is not"),
    ("drop_pct", "Price dropped by at least (%)"),
)
CHANGE_ONLY = (
    ("", "Any change"),
    ("additions", "Only added lines"),
    ("removals", "Only removed lines"),
)
_TEXT_OPS = dict(TEXT_OPS)


@dataclass
class UrlRow:
    url: str = ""
    selector: str = ""
    # How the page is read when the task was given one (`plain`, `browser`): kept through the
    # form (a hidden field) so that editing a task does not change it.
    render: str = ""


@dataclass
class RuleRow:
    op: str = "contains"
    value: str = ""

    @property
    def kind(self) -> str:
        # The operators of the two kinds do not overlap, so the one choice says both.
        return "text" if self.op in _TEXT_OPS else "number"


def _text(form: Mapping[str, Any], name: str) -> str:
    return str(form.get(name, ""))[:_MAX_CHARS]


def url_rows_of(form: Mapping[str, Any]) -> list[UrlRow]:
    """The URL rows as posted (`url_0`, `selector_0`, …), empty ones kept (at least one)."""
    rows = [
        UrlRow(_text(form, f"url_{i}"), _text(form, f"selector_{i}"), _render(form, i))
        for i in range(MAX_ROWS)
        if f"url_{i}" in form or f"selector_{i}" in form
    ]
    return rows or [UrlRow()]


def _render(form: Mapping[str, Any], row: int) -> str:
    value = _text(form, f"render_{row}")
    return value if value in ("plain", "browser") else ""


def rule_rows_of(form: Mapping[str, Any]) -> list[RuleRow]:
    """The condition rows as posted (`rule_op_0`, `rule_value_0`, …), at least one."""
    rows = [
        RuleRow(_text(form, f"rule_op_{i}") or "contains", _text(form, f"rule_value_{i}"))
        for i in range(MAX_ROWS)
        if f"rule_op_{i}" in form or f"rule_value_{i}" in form
    ]
    return rows or [RuleRow()]


def _number_text(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def url_rows_from_task(task: TaskRead) -> list[UrlRow]:
    return [UrlRow(t.url, t.selector or "", t.render or "") for t in task.targets] or [UrlRow()]


def rule_rows_from_task(task: TaskRead) -> list[RuleRow]:
    if task.rules is None:
        return [RuleRow()]
    return [
        RuleRow(c.op, c.value if c.kind == "text" else _number_text(c.value))
        for c in task.rules.conditions
    ]


def url_entries(rows: list[UrlRow]) -> tuple[list[str | dict[str, str]], list[int]]:
    """The API's `urls` for the rows that hold something, and the row of each entry."""
    entries: list[str | dict[str, str]] = []
    rows_of: list[int] = []
    for i, row in enumerate(rows):
        url, selector = row.url.strip(), row.selector.strip()
        if not url and not selector:
            continue
        entry = {"url": url} | ({"selector": selector} if selector else {})
        entry |= {"render": row.render} if row.render else {}
        entries.append(entry if len(entry) > 1 else url)
        rows_of.append(i)
    return entries, rows_of


def rules_body(match: str, rows: list[RuleRow]) -> tuple[dict[str, Any] | None, list[int]]:
    """The API's `rules` for the rows with a value (None when there are none), and the row of
    each condition. Values go as typed: the schema reads numbers and says what it refused."""
    conditions: list[dict[str, Any]] = []
    rows_of: list[int] = []
    for i, row in enumerate(rows):
        value = row.value.strip()
        if not value:
            continue
        conditions.append({"kind": row.kind, "op": row.op, "value": value})
        rows_of.append(i)
    if not conditions:
        return None, []
    return {"match": match or "all", "conditions": conditions}, rows_of


def change_body(ignore_lines: str, only: str) -> dict[str, Any] | None:
    """The API's `change` filters (None: every line counts)."""
    patterns = [line.strip() for line in ignore_lines.splitlines() if line.strip()]
    if not patterns and not only:
        return None
    return {"ignore_lines": patterns, "only": only or None}


def error_key(loc: list[Any], url_rows: list[int], rule_rows: list[int]) -> tuple[str, str]:
    """The form field an error of the watching part belongs to (`loc` without "body"), and a
    prefix for its message."""
    head, rest = loc[0], loc[1:]
    if head == "urls" and rest and isinstance(rest[0], int) and rest[0] < len(url_rows):
        row = url_rows[rest[0]]
        return ("selector" if "selector" in rest[1:] else "url") + f"_{row}", ""
    if head == "rules" and rest[:1] == ["conditions"] and len(rest) > 1:
        index = rest[1]
        if isinstance(index, int) and index < len(rule_rows):
            return f"rule_{rule_rows[index]}", ""
    if head == "change" and rest[:1] == ["ignore_lines"]:
        line = f"Line {rest[1] + 1}: " if len(rest) > 1 and isinstance(rest[1], int) else ""
        return "ignore_lines", line
    if head == "change" and rest[:1] == ["only"]:
        return "change_only", ""
    return str(head), ""
