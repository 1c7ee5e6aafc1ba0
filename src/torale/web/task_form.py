"""The new/edit task form: what the fields hold, the schedule presets as cron, and errors
placed next to their fields. Validation itself is the API's (TaskCreate/TaskUpdate and the
task service): this module only translates between the form and those."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from torale.errors import FieldValidationError, validation_error_items
from torale.notify.channels import MASK
from torale.tasks.schedule import InvalidCronError, next_run_after, normalize_cron
from torale.tasks.schemas import TaskCreate, TaskRead, TaskUpdate

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
    "urls",
    "schedule",
    "timezone",
    "notify_behavior",
    "notifications",
}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _hhmm(text: str) -> tuple[int, int] | None:
    hour, _, minute = text.partition(":")
    if hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60:
        return int(hour), int(minute)
    return None


@dataclass
class TaskForm:
    """The form as typed (kept when the server refuses it) and the errors per field."""

    name: str = ""
    search_query: str = ""
    condition_description: str = ""
    urls: str = ""
    schedule_kind: str = "daily"
    every_hours: str = "6"
    daily_at: str = "09:00"
    weekly_day: str = "1"
    weekly_at: str = "09:00"
    cron: str = "0 9 * * *"
    timezone: str = ""
    notify_behavior: str = "once"
    emails: str = ""
    webhooks: str = ""
    apprise: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)
    # Channels the form cannot show (a webhook's headers): kept as stored, masks included.
    _original_channels: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_form(cls, form: FormData, original: TaskRead | None = None) -> TaskForm:
        values = {
            name: str(form.get(name, ""))[:5000]
            for name in cls.__dataclass_fields__
            if not name.startswith("_") and name != "errors"
        }
        made = cls(**values)  # type: ignore[arg-type]
        if original is not None:
            made._original_channels = [c.model_dump(mode="json") for c in original.notifications]
        return made

    @classmethod
    def from_task(cls, task: TaskRead) -> TaskForm:
        channels = [c.model_dump(mode="json") for c in task.notifications]
        made = cls(
            name=task.name,
            search_query=task.search_query,
            condition_description=task.condition_description,
            urls="\n".join(task.urls),
            cron=task.schedule,
            timezone=task.timezone,
            notify_behavior=task.notify_behavior,
            emails="\n".join(c["address"] for c in channels if c["type"] == "email"),
            webhooks="\n".join(c["url"] for c in channels if c["type"] == "webhook"),
            apprise="\n".join(c["url"] for c in channels if c["type"] == "apprise"),
            _original_channels=channels,
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

    def data(self) -> dict[str, Any]:
        return {
            "name": self.name.strip() or self.search_query.strip()[:200] or "New Monitor",
            "search_query": self.search_query,
            "condition_description": self.condition_description or None,
            "urls": _lines(self.urls),
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
        data["condition_description"] = self.condition_description.strip()
        try:
            return TaskUpdate.model_validate(data)
        except ValidationError as exc:
            self.add_errors(validation_error_items(exc.errors()))
            return None

    def add_errors(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            loc = [part for part in item["loc"] if part != "body"]
            name = str(loc[0]) if loc and str(loc[0]) in _FIELDS else "form"
            message = str(item["msg"])
            if name in ("urls", "notifications") and len(loc) > 1 and isinstance(loc[1], int):
                message = f"Line {loc[1] + 1}: {message}"
            self.errors.setdefault(name, []).append(message)

    def refused(self, exc: FieldValidationError) -> None:
        self.add_errors(exc.errors)


def next_runs(cron: str, timezone: str, count: int = 3) -> list[datetime]:
    """The next `count` run times of a cron (InvalidCronError or KeyError-free ValueError)."""
    expression = normalize_cron(cron)
    moments: list[datetime] = []
    after = datetime.now(UTC)
    for _ in range(count):
        after = next_run_after(expression, timezone, after)
        moments.append(after)
    return moments


__all__ = ["MASK", "InvalidCronError", "TaskForm", "next_runs"]
