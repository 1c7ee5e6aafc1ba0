"""How values read on a page: schedules in words, times, hosts of URLs, modes and rules in
words, what a change or rules run read, and the lines of a diff.

Times are written absolute (UTC) in a `<time>` element: a page may be served from the page cache
long after it was rendered, and an absolute time stays true. app.js shows them relative to now
("5 min ago", refreshed while the page is open) with the exact local time in their title."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup

_DAY_NAMES = list(calendar.day_name)  # Monday first
_CRON_DAYS = {"0": "Sunday", "7": "Sunday"} | {
    str(i + 1): name for i, name in enumerate(_DAY_NAMES[:6])
}


def _time(hour: str, minute: str) -> str:
    return f"{int(hour):02d}:{int(minute):02d}"


def describe_schedule(cron: str, timezone: str) -> str:
    """A cron in words: "every day at 09:00 Europe/Berlin"; the cron itself when it has no
    simple reading."""
    fields = cron.split()
    if len(fields) != 5:
        return cron
    minute, hour, day, month, weekday = fields
    numeric = minute.isdigit() and hour.isdigit()
    if (day, month) == ("*", "*"):
        if numeric and weekday == "*":
            return f"every day at {_time(hour, minute)} {timezone}"
        if numeric and weekday in _CRON_DAYS:
            return f"every {_CRON_DAYS[weekday]} at {_time(hour, minute)} {timezone}"
        if numeric and weekday == "1-5":
            return f"every weekday at {_time(hour, minute)} {timezone}"
        if minute.isdigit() and weekday == "*":
            if hour == "*":
                return "every hour"
            if hour.startswith("*/") and hour[2:].isdigit():
                return f"every {int(hour[2:])} hours"
        if minute.startswith("*/") and minute[2:].isdigit() and (hour, weekday) == ("*", "*"):
            return f"every {int(minute[2:])} minutes"
    return f"{cron} ({timezone})"


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"


def relative(moment: datetime | None, now: datetime | None = None) -> str:
    """ "5 min ago" / "in 3 h" / "just now"."""
    if moment is None:
        return "never"
    delta = (moment - (now or datetime.now(UTC))).total_seconds()
    if abs(delta) < 30:
        return "just now"
    return f"in {_span(delta)}" if delta > 0 else f"{_span(delta)} ago"


def iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else ""


def utc_text(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def host(url: str) -> str:
    return urlsplit(url).hostname or url


def hosts(urls: list[str]) -> str:
    return ", ".join(host(url) for url in urls)


# --- helpers the templates call per row (Python functions: much cheaper than Jinja macros) ---

_LABELS = {
    "paused": "Paused",
    "failed": "Failed",
    "running": "Running",
    "met": "Condition met",
    "not-met": "Not met",
    "new": "Not run yet",
}


def when(moment: datetime | None) -> Markup:
    """A <time> with the moment in UTC; app.js shows it relative to now, in the viewer's zone
    in its title."""
    if moment is None:
        return Markup("never")
    # Formatted datetimes (digits, punctuation, "UTC"): nothing to escape; the format of an
    # escaping Markup was most of a task row's rendering time.
    text = f'<time datetime="{iso(moment)}" data-relative>{utc_text(moment)}</time>'
    return Markup(text)  # noqa: S704


def verdict_of(task: Any) -> str:
    """What a task's dot says: paused, failed, running, met, not-met or new."""
    run = task.last_execution
    if task.state == "paused":
        return "paused"
    if run is not None and run.status == "failed":
        return "failed"
    if run is not None and run.status in ("pending", "running"):
        return "running"
    if task.condition_met or task.state == "completed":
        return "met"
    return "not-met" if run is not None else "new"


def status_label(kind: str) -> str:
    return _LABELS[kind]


_DOTS = {  # the kinds are the constants above
    kind: Markup(f'<span class="dot dot-{kind}" aria-hidden="true"></span>')  # noqa: S704
    for kind in _LABELS
}


def dot(kind: str) -> Markup:
    return _DOTS[kind]


# --- watching without a model: modes and rules in words, what a run read, diffs --------------

MODE_NAMES = {"model": "AI model", "change": "Page changes", "rules": "Rules"}
_NUMBER_WORDS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "=", "!=": "≠"}
_TEXT_WORDS = {
    "contains": "the text contains",
    "not_contains": "the text does not contain",
    "matches": "the text matches",
}


def _number(value: Any) -> str:
    number = float(value)
    return f"{int(number):,}" if number.is_integer() else f"{number:,}"


def describe_condition(condition: Any) -> str:
    """One rules condition in words: `price < 50`, `the text contains “In stock”`."""
    op, value = condition.op, condition.value
    if op == "drop_pct":
        return f"price dropped by at least {_number(value)}%"
    if op in _NUMBER_WORDS:
        return f"price {_NUMBER_WORDS[op]} {_number(value)}"
    if op == "matches":
        return f"{_TEXT_WORDS[op]} /{value}/"
    return f"{_TEXT_WORDS.get(op, op)} “{value}”"


def describe_rules(rules: Any) -> str:
    """A task's rules in words: "price < 50 and the text contains “In stock”"."""
    joiner = " and " if rules.match == "all" else " or "
    return joiner.join(describe_condition(c) for c in rules.conditions)


def describe_change(change: Any) -> str:
    """What counts as a change, in words (empty: any changed line)."""
    parts = []
    if change is not None and change.only:
        parts.append(f"only {change.only}")
    if change is not None and change.ignore_lines:
        patterns = ", ".join(f"/{p}/" for p in change.ignore_lines)
        parts.append(f"ignoring lines matching {patterns}")
    return "; ".join(parts)


_HASH_NOTE = re.compile(r"… \(sha256 [0-9a-f]{16}\)$")


def watched_texts(current_state: dict[str, Any]) -> list[tuple[str, str]]:
    """A change run's state as (target, start of its text): the text cut as the state keeps
    it, without the hash that follows."""
    return [
        (label, _HASH_NOTE.sub("…", text))
        for label, text in current_state.items()
        if isinstance(text, str)
    ]


_NEXT_CHECK = re.compile(r"; (?=[✓✗] )")
# The engine names conditions tersely (watch.rules); the page words them as the task page does.
_CHECK_WORDS = (
    ("number ", "price "),
    ("text not_contains ", "the text does not contain "),
    ("text contains ", "the text contains "),
    ("text matches ", "the text matches "),
)


def _check_words(check: str) -> str:
    for terse, words in _CHECK_WORDS:
        if check.startswith(terse):
            return words + check[len(terse) :]
    return check


def rule_checks(reasoning: str) -> list[tuple[str, list[tuple[bool, str]]]]:
    """A rules run's reasoning (a line per target: `target: ✓ …; ✗ …`) as (target, [(held,
    condition in words)])."""
    found = []
    for line in reasoning.splitlines():
        label, _, rest = line.partition(": ")
        checks = [
            (part.startswith("✓"), _check_words(part[2:]))
            for part in _NEXT_CHECK.split(rest)
            if part
        ]
        found.append((label, checks))
    return found


def diff_lines(unified: str) -> list[tuple[str, str]]:
    """The lines of one source's unified diff as (kind, line): kind is `add`, `del`, `hunk` or
    `same`; the file header lines are left out (the page shows the source itself)."""
    lines: list[tuple[str, str]] = []
    for line in unified.splitlines():
        if line.startswith(("--- ", "+++ ")) and not lines:
            continue
        if line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        lines.append((kind, line))
    return lines
