"""The fluent way to make a task:

monitor("When is the next iPhone release?")
    .when("Apple has announced a specific date")
    .check_every("6 hours")
    .notify(webhook="https://hooks.example.com/torale", email="me@example.com")
    .named("iPhone release")
    .create()
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from torale.sdk.client import Torale, ToraleAsync, task_fields
from torale.sdk.models import Task

_EVERY = re.compile(r"^(?:every\s+)?(\d+)?\s*(minute|hour|day|week)s?$", re.IGNORECASE)
_NAMED = {"hourly": "0 * * * *", "daily": "0 9 * * *", "weekly": "0 9 * * 1"}


_NUMBER = re.compile(
    r"^(?:(?:price|number)\s*)?(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)$", re.IGNORECASE
)
_DROP = re.compile(r"^(?:price|number)?\s*drops?\s+(?:by\s+)?(\d+(?:\.\d+)?)\s*%$", re.IGNORECASE)
_TEXT = re.compile(r"^(contains|not[ _]contains|matches)\s+(.+)$", re.IGNORECASE)


def condition_for(text: str) -> dict[str, Any]:
    """A rules condition from a short expression: `price < 50` (`<`, `<=`, `>`, `>=`, `==`,
    `!=`; "price" or "number" may be left out), `price drops 10%`, `contains "In stock"`,
    `not contains "Sold out"`, `matches "^Only \\d+ left"`."""
    expression = " ".join(text.split())
    if match := _NUMBER.match(expression):
        return {"kind": "number", "op": match.group(1), "value": float(match.group(2))}
    if match := _DROP.match(expression):
        return {"kind": "number", "op": "drop_pct", "value": float(match.group(1))}
    if match := _TEXT.match(expression):
        op = match.group(1).lower().replace(" ", "_")
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return {"kind": "text", "op": op, "value": value}
    raise ValueError(
        f"{text!r}: write a condition as 'price < 50', 'price drops 10%', "
        "'contains \"In stock\"', 'not contains \"Sold out\"' or 'matches \"regex\"'"
    )


def schedule_for(every: str) -> str:
    """A cron for "6 hours", "30 minutes", "day", "daily", "2 weeks"… or a cron given as is."""
    text = " ".join(every.split())
    if text.lower() in _NAMED:
        return _NAMED[text.lower()]
    match = _EVERY.match(text)
    if match is None:
        return text  # a cron expression (validated by the server)
    count, unit = int(match.group(1) or 1), match.group(2).lower()
    if unit == "minute":
        if not 1 <= count <= 59 or 60 % count:
            raise ValueError(f"{every!r}: use a number of minutes that divides an hour")
        return f"*/{count} * * * *" if count > 1 else "* * * * *"
    if unit == "hour":
        if not 1 <= count <= 23 or 24 % count:
            raise ValueError(f"{every!r}: use a number of hours that divides a day")
        return f"0 */{count} * * *" if count > 1 else "0 * * * *"
    if unit == "day":
        if count != 1:
            raise ValueError(f"{every!r}: cron cannot count days evenly; use a cron expression")
        return "0 9 * * *"
    if count != 1:
        raise ValueError(f"{every!r}: cron cannot count weeks; use a cron expression")
    return "0 9 * * 1"


@dataclass(frozen=True)
class Monitor:
    search_query: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    channels: tuple[dict[str, Any], ...] = ()
    targets: tuple[str | dict[str, str], ...] = ()

    def _with(self, **values: Any) -> Monitor:
        return replace(self, fields={**self.fields, **values})

    def when(self, condition: str) -> Monitor:
        return self._with(condition_description=condition)

    def check_every(self, every: str, *, timezone: str | None = None) -> Monitor:
        return self._with(schedule=schedule_for(every), timezone=timezone)

    def reading(self, *urls: str) -> Monitor:
        return replace(self, targets=(*self.targets, *urls))

    def watching(self, url: str, selector: str | None = None) -> Monitor:
        """Read `url` on every run; with `selector` (CSS, `xpath:…`, `json:…`) only that part."""
        target: str | dict[str, str] = {"url": url, "selector": selector} if selector else url
        return replace(self, targets=(*self.targets, target))

    def when_changed(
        self, *, ignore_lines: list[str] | None = None, only: str | None = None
    ) -> Monitor:
        """Mode change: notify when the watched text differs from the previous run's."""
        change = {k: v for k, v in {"ignore_lines": ignore_lines, "only": only}.items() if v}
        return self._with(mode="change", change=change or None)

    def when_all(self, *conditions: str) -> Monitor:
        """Mode rules: notify when a target meets every condition (`"price < 50"` …)."""
        rules = {"match": "all", "conditions": [condition_for(c) for c in conditions]}
        return self._with(mode="rules", rules=rules)

    def when_any(self, *conditions: str) -> Monitor:
        """Mode rules: notify when a target meets any of the conditions."""
        rules = {"match": "any", "conditions": [condition_for(c) for c in conditions]}
        return self._with(mode="rules", rules=rules)

    def notify(
        self,
        *,
        webhook: str | None = None,
        email: str | None = None,
        apprise: str | None = None,
        behavior: str | None = None,
    ) -> Monitor:
        channels = list(self.channels)
        if webhook:
            channels.append({"type": "webhook", "url": webhook})
        if email:
            channels.append({"type": "email", "address": email})
        if apprise:
            channels.append({"type": "apprise", "url": apprise})
        updated = replace(self, channels=tuple(channels))
        return updated._with(notify_behavior=behavior) if behavior else updated

    def named(self, name: str) -> Monitor:
        return self._with(name=name)

    def with_context(self, context: Any) -> Monitor:
        return self._with(context=context)

    def using(self, *, model: str | None = None, search_provider: str | None = None) -> Monitor:
        config = {
            k: v for k, v in {"model": model, "search_provider": search_provider}.items() if v
        }
        return self._with(config=config)

    def run_immediately(self) -> Monitor:
        return self._with(run_immediately=True)

    def request(self) -> dict[str, Any]:
        """The task's fields, as POST /api/v1/tasks takes them."""
        values = {k: v for k, v in self.fields.items() if v is not None}
        if self.channels:
            values["notifications"] = list(self.channels)
        if self.targets:
            values["urls"] = list(self.targets)
        return task_fields(self.search_query, **values)

    def create(self, client: Torale | None = None) -> Task:
        if client is not None:
            return client.tasks.create(**self.request())
        with Torale() as default:
            return default.tasks.create(**self.request())

    async def acreate(self, client: ToraleAsync) -> Task:
        return await client.tasks.create(**self.request())


def monitor(search_query: str | None = None) -> Monitor:
    """A task to build; without a search query, watch pages (`watching`) instead."""
    return Monitor(search_query)
