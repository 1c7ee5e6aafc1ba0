"""The new/edit task form: what the fields hold, the schedule presets as cron, the row actions
(add or remove a URL or a condition, with or without JavaScript), and errors placed next to
their fields. Validation itself is the API's (TaskCreate/TaskUpdate and the task service): this
module only translates between the form and those; watch_form.py does it for the watching part
(mode, URL rows, change filters, rules)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError
from starlette.datastructures import FormData

from torale.errors import FieldValidationError, validation_error_items
from torale.notify.channels import MASK
from torale.tasks.schedule import InvalidCronError, next_run_after, normalize_cron
from torale.tasks.schemas import TaskCreate, TaskRead, TaskUpdate
from torale.tasks.service import resolve_mode
from torale.web.watch_form import (
    MAX_ROWS,
    RuleRow,
    UrlRow,
    change_body,
    error_key,
    rule_rows_from_task,
    rule_rows_of,
    rules_body,
    url_entries,
    url_rows_from_task,
    url_rows_of,
)

HOUR_CHOICES = (1, 2, 3, 4, 6, 8, 12)
WEEKDAYS = (
    ("1", "Monday"),
    ("2", "Tuesday"),
    ("3", "Wednesday"),
    ("4", "Thursday"),
    ("5", "Friday"),
    ("6", "Saturday"),
    ("0", "Sunday"),
)
NOTIFY_BEHAVIORS = (
    ("once", "Once", "Tell me the first time the condition holds, then stop the task."),
    ("always", "Every time", "Tell me on every run where the condition holds."),
    ("track_state", "When it changes", "Tell me whenever the answer changes from the last one."),
)
_FIELDS = {
    "name",
    "search_query",
    "condition_description",
    "mode",
    "urls",
    "rules",
    "change",
    "schedule",
    "timezone",
    "notify_behavior",
    "notifications",
    "render",
    "screenshot",
}
_WATCHING = {"urls", "rules", "change"}
# Where a row action sends the focus and which part of the form it re-renders.
URL_ROWS, RULE_ROWS = "url-rows", "rule-rows"


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _hhmm(text: str) -> tuple[int, int] | None:
    hour, _, minute = text.partition(":")
    if hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60:
        return int(hour), int(minute)
    return None


Row = TypeVar("Row", UrlRow, RuleRow)


def _change_rows(rows: list[Row], blank: Callable[[], Row], add: bool, index: str) -> int | None:
    """Add an empty row (at most MAX_ROWS) or remove row `index`, leaving at least one; the
    index of the row added, if one was."""
    if add:
        if len(rows) >= MAX_ROWS:
            return None
        rows.append(blank())
        return len(rows) - 1
    if index.isdigit() and int(index) < len(rows):
        del rows[int(index)]
    if not rows:
        rows.append(blank())
    return None


@dataclass
class TaskForm:
    """The form as typed (kept when the server refuses it) and the errors per field."""

    name: str = ""
    mode: str = ""
    search_query: str = ""
    condition_description: str = ""
    url_rows: list[UrlRow] = field(default_factory=lambda: [UrlRow()])
    rules_match: str = "all"
    rule_rows: list[RuleRow] = field(default_factory=lambda: [RuleRow()])
    ignore_lines: str = ""
    change_only: str = ""
    schedule_kind: str = "daily"
    every_hours: str = "6"
    daily_at: str = "09:00"
    weekly_day: str = "1"
    weekly_at: str = "09:00"
    cron: str = "0 9 * * *"
    timezone: str = ""
    notify_behavior: str = "once"
    render: str = "plain"  # how the pages are read: plain | browser (a URL row may say its own)
    screenshot: str = ""  # "1" when checked
    emails: str = ""
    webhooks: str = ""
    apprise: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)
    focus: str = ""  # the id of the control a row action leaves the focus on
    # Channels the form cannot show (a webhook's headers): kept as stored, masks included.
    _original_channels: list[dict[str, Any]] = field(default_factory=list)
    # The saved task's render and screenshot: an edit sends them only when they changed (a
    # server whose browser went away does not refuse edits of other fields).
    _original_reading: tuple[str, bool] | None = None

    @classmethod
    def from_form(cls, form: FormData, original: TaskRead | None = None) -> TaskForm:
        values = {
            name: str(form.get(name, ""))[:5000]
            for name, spec in cls.__dataclass_fields__.items()
            if spec.type == "str" and name not in ("focus",)
        }
        made = cls(**values)  # type: ignore[arg-type]
        made.url_rows = url_rows_of(form)
        made.rule_rows = rule_rows_of(form)
        if original is not None:
            made._original_channels = [c.model_dump(mode="json") for c in original.notifications]
            made._original_reading = (original.render, original.screenshot)
            if "render" not in form:  # a disabled choice is not posted: the saved one stays
                made.render = original.render
        return made

    @classmethod
    def from_task(cls, task: TaskRead) -> TaskForm:
        channels = [c.model_dump(mode="json") for c in task.notifications]
        made = cls(
            name=task.name,
            mode=task.mode,
            search_query=task.search_query,
            condition_description=task.condition_description,
            url_rows=url_rows_from_task(task),
            rules_match=task.rules.match if task.rules else "all",
            rule_rows=rule_rows_from_task(task),
            ignore_lines="\n".join(task.change.ignore_lines) if task.change else "",
            change_only=(task.change.only or "") if task.change else "",
            cron=task.schedule,
            timezone=task.timezone,
            notify_behavior=task.notify_behavior,
            render=task.render,
            screenshot="1" if task.screenshot else "",
            emails="\n".join(c["address"] for c in channels if c["type"] == "email"),
            webhooks="\n".join(c["url"] for c in channels if c["type"] == "webhook"),
            apprise="\n".join(c["url"] for c in channels if c["type"] == "apprise"),
            _original_channels=channels,
            _original_reading=(task.render, task.screenshot),
        )
        made._read_schedule(task.schedule)
        return made

    def _read_schedule(self, cron: str) -> None:
        """Show a cron as the preset it is, when it is one."""
        minute, hour, day, month, weekday = cron.split()
        self.schedule_kind = "cron"
        if (day, month, weekday) == ("*", "*", "*") and minute == "0" and hour == "*":
            self.schedule_kind, self.every_hours = "hours", "1"
        elif (day, month, weekday) == ("*", "*", "*") and minute == "0" and hour.startswith("*/"):
            if hour[2:].isdigit() and int(hour[2:]) in HOUR_CHOICES:
                self.schedule_kind, self.every_hours = "hours", hour[2:]
        elif (day, month) == ("*", "*") and minute.isdigit() and hour.isdigit():
            at = f"{int(hour):02d}:{int(minute):02d}"
            if weekday == "*":
                self.schedule_kind, self.daily_at = "daily", at
            elif weekday in dict(WEEKDAYS):
                self.schedule_kind, self.weekly_day, self.weekly_at = "weekly", weekday, at

    def schedule(self) -> str:
        """The cron the chosen preset means (the cron field as typed for "cron")."""
        if self.schedule_kind == "hours":
            hours = int(self.every_hours) if self.every_hours.isdigit() else 0
            if hours == 1:
                return "0 * * * *"
            return f"0 */{hours} * * *" if hours in HOUR_CHOICES else "invalid"
        if self.schedule_kind == "daily":
            at = _hhmm(self.daily_at)
            return f"{at[1]} {at[0]} * * *" if at else "invalid"
        if self.schedule_kind == "weekly":
            at = _hhmm(self.weekly_at)
            if at and self.weekly_day in dict(WEEKDAYS):
                return f"{at[1]} {at[0]} * * {self.weekly_day}"
            return "invalid"
        return self.cron.strip()

    def channels(self) -> list[dict[str, Any]]:
        """The notification channels in the order they were stored, new ones after."""
        wanted: list[dict[str, Any]] = (
            [{"type": "webhook", "url": url} for url in _lines(self.webhooks)]
            + [{"type": "email", "address": a} for a in _lines(self.emails)]
            + [{"type": "apprise", "url": url} for url in self.apprise.split() if url]
        )
        result: list[dict[str, Any]] = []
        for old in self._original_channels:
            key = old.get("url") or old.get("address")
            match = next(
                (
                    w
                    for w in wanted
                    if w["type"] == old["type"] and (w.get("url") or w.get("address")) == key
                ),
                None,
            )
            if match is not None:
                wanted.remove(match)
                result.append(old)  # as stored (masked secrets are restored by the service)
        return result + wanted

    @property
    def shown_mode(self) -> str:
        """The mode the form shows: as chosen, else the one the API would take."""
        return resolve_mode(mode=self.mode or None, rules=None, search_query=self.search_query)

    def _watching(self) -> tuple[dict[str, Any], list[int], list[int]]:
        """The watching part of the request (mode, urls, rules, change filters), and the row
        of each URL entry and each condition sent."""
        urls, url_rows = url_entries(self.url_rows)
        rules, rule_rows = (
            rules_body(self.rules_match, self.rule_rows) if self.mode == "rules" else (None, [])
        )
        change = change_body(self.ignore_lines, self.change_only) if self.mode == "change" else None
        body: dict[str, Any] = {"urls": urls, "rules": rules, "change": change}
        # As posted: the API says what it refuses (an unknown render, a browser it lacks).
        body["render"] = self.render or "plain"
        body["screenshot"] = bool(self.screenshot)
        if self.mode:
            body["mode"] = self.mode
        if self.mode in ("", "model"):  # the fields of the other modes are not theirs
            body["search_query"] = self.search_query.strip() or None
            body["condition_description"] = self.condition_description.strip() or None
        return body, url_rows, rule_rows

    def data(self) -> dict[str, Any]:
        """The request the form describes, in TaskCreate's shape."""
        return {
            "name": self.name.strip() or None,
            **self._watching()[0],
            "schedule": self.schedule(),
            "timezone": self.timezone.strip() or "UTC",
            "notify_behavior": self.notify_behavior,
            "notifications": self.channels(),
        }

    def create(self) -> TaskCreate | None:
        try:
            return TaskCreate.model_validate(self.data())
        except ValidationError as exc:
            self.add_errors(validation_error_items(exc.errors()))
            return None

    def update(self) -> TaskUpdate | None:
        data = self.data()
        if data["name"] is None:
            del data["name"]  # an empty name keeps the task's
        if self._original_reading is not None:
            if data["render"] == self._original_reading[0]:
                del data["render"]
            if data["screenshot"] == self._original_reading[1]:
                del data["screenshot"]
        if "search_query" in data:
            # As typed: an emptied query is refused at its field rather than left unchanged;
            # an empty condition follows the query again.
            data["search_query"] = self.search_query
            data["condition_description"] = self.condition_description.strip()
        try:
            return TaskUpdate.model_validate(data)
        except ValidationError as exc:
            self.add_errors(validation_error_items(exc.errors()))
            return None

    def add_errors(self, items: list[dict[str, Any]]) -> None:
        _, url_rows, rule_rows = self._watching()
        for item in items:
            loc = [part for part in item["loc"] if part != "body"]
            message = str(item["msg"])
            if loc and loc[0] in _WATCHING:
                name, prefix = error_key(loc, url_rows, rule_rows)
                message = prefix + message
            else:
                name = str(loc[0]) if loc and str(loc[0]) in _FIELDS else "form"
                if name == "notifications" and len(loc) > 1 and isinstance(loc[1], int):
                    message = f"Line {loc[1] + 1}: {message}"
            self.errors.setdefault(name, []).append(message)

    def apply(self, action: str) -> str | None:
        """Carry out a row action (`add-url`, `remove-url:N`, `add-rule`, `remove-rule:N`):
        the part of the form it changed, or None when `action` is none of them (a save)."""
        verb, _, index = action.partition(":")
        if verb in ("add-url", "remove-url"):
            added = _change_rows(self.url_rows, UrlRow, verb == "add-url", index)
            part, name = URL_ROWS, "url"
        elif verb in ("add-rule", "remove-rule"):
            added = _change_rows(self.rule_rows, RuleRow, verb == "add-rule", index)
            part, name = RULE_ROWS, "rule_op"
        else:
            return None
        # The new row's first control, or the add button where a removed row was.
        self.focus = f"{name}_{added}" if added is not None else verb.replace("remove", "add")
        return part

    def refused(self, exc: FieldValidationError) -> None:
        self.add_errors(exc.errors)


_LABELS = {
    "name": "Name",
    "search_query": "Search query",
    "condition_description": "Tell me when",
    "mode": "How Torale decides",
    "urls": "Pages",
    "rules": "Conditions",
    "change": "Change filters",
    "change_only": "What counts as a change",
    "ignore_lines": "Ignore lines matching",
    "schedule": "Schedule",
    "timezone": "Time zone",
    "notify_behavior": "Notify",
    "notifications": "Notifications",
    "render": "How to read the pages",
    "screenshot": "Screenshots",
}
_ROW_LABELS = {"url": "Page {}", "selector": "Page {} selector", "rule": "Condition {}"}


def field_label(name: str) -> str:
    """How a form field is named where its error is shown away from it (the preview)."""
    kind, _, row = name.rpartition("_")
    if row.isdigit() and kind in _ROW_LABELS:
        return _ROW_LABELS[kind].format(int(row) + 1)
    return _LABELS.get(name, "")


def next_runs(cron: str, timezone: str, count: int = 3) -> list[datetime]:
    """The next `count` run times of a cron (InvalidCronError or KeyError-free ValueError)."""
    expression = normalize_cron(cron)
    moments: list[datetime] = []
    after = datetime.now(UTC)
    for _ in range(count):
        after = next_run_after(expression, timezone, after)
        moments.append(after)
    return moments


__all__ = ["MASK", "InvalidCronError", "TaskForm", "field_label", "next_runs"]
