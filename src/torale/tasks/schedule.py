"""Cron schedules: validation, the shortest gap between runs, and the next run time."""

from __future__ import annotations

import itertools
import re
import zoneinfo
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any

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


ACCEPTED = (
    "use 5 fields, minute hour day-of-month month day-of-week (e.g. 0 9 * * 1-5), each with "
    "numbers, *, ranges (1-5), lists (1,15), steps (*/15 or 0-30/5) and names for months and "
    "weekdays (JAN, MON-FRI); or one of @hourly, @daily, @weekly, @monthly, @yearly"
)
_FIELDS = (  # name, lowest, highest
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),  # 0 and 7 are both Sunday
)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {name: i + 1 for i, name in enumerate(_MONTHS)},
    {name: i for i, name in enumerate(_WEEKDAYS)},
)
# `*`, `*/step`, `a`, `a-b`, `a-b/step`: a step follows only `*` or a range (as in Vixie cron).
_VALUE = "[0-9]{1,2}|[A-Z]{3}"
_ITEM = re.compile(
    rf"(?:\*|(?P<start>{_VALUE})(?:-(?P<end>{_VALUE}))?)(?:/(?P<step>[0-9]{{1,3}}))?"
)


def _invalid(why: str) -> InvalidCronError:
    return InvalidCronError(f"Invalid cron expression: {why}; {ACCEPTED}")


def _check_field(text: str, index: int) -> None:
    name, lowest, highest = _FIELDS[index]
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None or (match["step"] and match["start"] and not match["end"]):
            raise _invalid(f"the {name} field is not standard cron syntax")
        values = []
        for part in (match["start"], match["end"]):
            if part is None:
                continue
            value = int(part) if part.isdigit() else _NAMES[index].get(part)
            if value is None:
                raise _invalid(f"the {name} field has a name it does not take")
            if not lowest <= value <= highest:
                raise _invalid(f"the {name} field takes {lowest}-{highest}")
            values.append(value)
        if len(values) == 2 and values[0] > values[1]:
            raise _invalid(f"a range in the {name} field runs backwards")
        if match["step"] is not None and int(match["step"]) == 0:
            raise _invalid(f"a step in the {name} field is 0")


@lru_cache(maxsize=1024)  # pure, and parsing a cron three ways was a tenth of a create
def normalize_cron(expression: str) -> str:
    """The 5-field form of `expression` (macros expanded); InvalidCronError if it is not one.

    Only standard cron is accepted: numbers, names, `*`, ranges, lists and steps after `*` or a
    range, plus the macros `@hourly` … `@yearly` (`@reboot` means nothing for a monitor).
    Extensions are refused: seconds or year fields, `L`, `W`, `#`, `?`, and croniter's random
    `R` and hashed `H`, which mean different things to different schedulers (or nothing), and
    whose run times the minimum interval cannot be checked against. A task must run at the same
    times whichever backend runs it. Error messages say what is accepted.
    """
    text = " ".join(expression.split()).upper()
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise _invalid("this macro is not supported")
        return MACROS[text.lower()]
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise _invalid(f"it has {len(fields)} field{'' if len(fields) == 1 else 's'}, not 5")
    for index, field in enumerate(fields):
        _check_field(field, index)
    if not croniter.is_valid(text):
        raise _invalid("it is not valid")
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError):
        raise _invalid("it never matches a date") from None
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


# In the IANA database but not a place: "Factory" is the zone for "not set yet".
_NOT_PLACES = frozenset({"Factory"})


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    """The IANA time zone names, from the tzdata package (a dependency), whatever the host has.

    The host's zoneinfo directory also holds files that are not zones in the IANA sense
    (`localtime`, `posixrules`, `posix/…`, `right/…`): a task's zone must mean the same on
    every server and every scheduler backend, so only the IANA list counts.
    """
    listed = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(listed.split()) - _NOT_PLACES


def is_valid_timezone(name: str) -> bool:
    """An IANA time zone name (canonical, or one of its backward-compatible aliases)."""
    return name in _timezones()


@lru_cache(maxsize=1024)
def _parsed(expression: str) -> tuple[Any, ...]:
    return tuple(croniter._expand(expression))


class _ParsedOnce(croniter):  # type: ignore[misc]
    """croniter that parses each expression once per process: parsing was half of computing
    a next run (every create and every dispatch computes one). The parse depends on the
    expression alone when no hash id, start-time phase or seconds field is asked for, as here;
    croniter copies the outer containers before changing them, and the copies below keep even
    that from reaching the cache."""

    @classmethod
    def _expand(cls, expr_format: str, **kw: Any) -> tuple[Any, ...]:
        if any(kw.values()):
            return super()._expand(expr_format, **kw)  # type: ignore[no-any-return]
        expanded, nth_weekday, expressions, nearest = _parsed(expr_format)
        return ([list(f) for f in expanded], dict(nth_weekday), list(expressions), nearest.copy())


def next_run_after(expression: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after `after` that the cron matches, read in `timezone`, as UTC."""
    local = after.astimezone(zoneinfo.ZoneInfo(timezone))
    nxt: datetime = _ParsedOnce(expression, local).get_next(datetime)
    return nxt.astimezone(UTC)
