"""Cron schedules: validation, the shortest gap between runs, and the next run time."""

from __future__ import annotations

import itertools
import zoneinfo
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MINUTES_PER_DAY = 24 * 60


class InvalidCronError(ValueError):
    pass


def normalize_cron(expression: str) -> str:
    """The 5-field form of `expression` (macros expanded); InvalidCronError if it is not one.

    Only standard syntax is accepted (numbers, names, `*`, ranges, lists, steps): extensions
    such as `L`, `W`, `#` and `?` mean different things to different schedulers (or nothing),
    and a task must run at the same times whichever backend runs it.
    """
    text = " ".join(expression.split())
    text = MACROS.get(text.lower(), text)
    fields = text.split(" ")
    if len(fields) != 5 or not croniter.is_valid(text):
        raise InvalidCronError("Invalid cron expression")
    day_of_month, day_of_week = fields[2].upper(), fields[4].upper()
    if any(mark in day_of_month for mark in "LW?") or any(mark in day_of_week for mark in "L#?"):
        raise InvalidCronError(
            "Invalid cron expression: L, W, # and ? are not supported; use standard cron"
        )
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError):
        raise InvalidCronError("Invalid cron expression: it never matches a date") from None
    return text


def _expanded(expression: str) -> tuple[list[int], list[int], bool]:
    minutes, hours, days, months, weekdays = croniter(expression).expanded
    every_day = days == ["*"] and months == ["*"] and weekdays == ["*"]
    minute_list = list(range(60)) if minutes == ["*"] else [int(m) for m in minutes]
    hour_list = list(range(24)) if hours == ["*"] else [int(h) for h in hours]
    return minute_list, hour_list, every_day


@lru_cache(maxsize=1024)
def min_interval_seconds(expression: str) -> int:
    """The shortest wall-clock gap between two consecutive runs of a valid 5-field cron.

    Every day the cron fires it fires at all hour x minute combinations, so the gaps within a
    day are exact. The gap across midnight counts when two consecutive days can both fire.
    """
    minutes, hours, every_day = _expanded(expression)
    times = sorted(h * 60 + m for h in hours for m in minutes)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    overnight = times[0] + _MINUTES_PER_DAY - times[-1]
    if not gaps:
        return overnight * 60  # one run a day at most: a day apart at the closest
    if overnight < min(gaps) and (every_day or _fires_on_consecutive_days(expression)):
        gaps.append(overnight)
    return min(gaps) * 60


def _fires_on_consecutive_days(expression: str) -> bool:
    _, _, days, months, weekdays = expression.split(" ")
    start = datetime(2000, 1, 1, tzinfo=UTC)
    daily = croniter(f"0 0 {days} {months} {weekdays}", start)
    previous = daily.get_next(datetime)
    # Eight years cover every weekday/date combination, leap days included.
    while previous.year < start.year + 8:
        current = daily.get_next(datetime)
        if current - previous == timedelta(days=1):
            return True
        previous = current
    return False


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_valid_timezone(name: str) -> bool:
    return name in _timezones()


def next_run_after(expression: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after `after` that the cron matches, read in `timezone`, as UTC."""
    local = after.astimezone(zoneinfo.ZoneInfo(timezone))
    nxt: datetime = croniter(expression, local).get_next(datetime)
    return nxt.astimezone(UTC)
