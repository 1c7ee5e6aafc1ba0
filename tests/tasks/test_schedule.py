"""Cron parsing, the shortest gap between runs, and next-run times in a time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from torale.tasks.schedule import (
    ACCEPTED,
    InvalidCronError,
    is_valid_timezone,
    min_interval_seconds,
    next_run_after,
    normalize_cron,
)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("0 9 * * *", "0 9 * * *"),
        ("  0   9 * *  * ", "0 9 * * *"),
        ("@daily", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
        ("0 9 * * MON-FRI", "0 9 * * MON-FRI"),
        ("0 9 * * mon-fri", "0 9 * * MON-FRI"),
        ("0 9 * jan,dec sun", "0 9 * JAN,DEC SUN"),
        ("0 9 * * 7", "0 9 * * 7"),  # Sunday, as 0
        ("0 */2 1-15/3 * *", "0 */2 1-15/3 * *"),
        ("@annually", "0 0 1 1 *"),
        ("@midnight", "0 0 * * *"),
    ],
)
def test_normalize(given: str, stored: str) -> None:
    assert normalize_cron(given) == stored


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("", "it has 0 fields, not 5"),
        ("x", "it has 1 field, not 5"),
        ("* * * *", "it has 4 fields, not 5"),
        ("0 0 * * * *", "it has 6 fields, not 5"),  # seconds or years
        ("0 0 9 * * * 2030", "it has 7 fields, not 5"),
        ("60 * * * *", "the minute field takes 0-59"),
        ("0 24 * * *", "the hour field takes 0-23"),
        ("0 0 0 * *", "the day-of-month field takes 1-31"),
        ("0 0 * 13 *", "the month field takes 1-12"),
        ("0 0 * * 8", "the day-of-week field takes 0-7"),
        ("@every 5m", "this macro is not supported"),
        ("@reboot", "this macro is not supported"),
        ("0 9 31 2 *", "it never matches a date"),
        ("*/0 * * * *", "a step in the minute field is 0"),
        ("30-10 * * * *", "a range in the minute field runs backwards"),
        ("0 0 * * JAN", "the day-of-week field has a name it does not take"),
        ("MON * * * *", "the minute field has a name it does not take"),
        # croniter's own extensions: random, hashed, last, weekday-nearest, nth, any
        ("R/5 * * * *", "the minute field is not standard cron syntax"),
        ("R * * * *", "the minute field is not standard cron syntax"),
        ("H/5 * * * *", "the minute field is not standard cron syntax"),
        ("H(0-29)/10 * * * *", "the minute field is not standard cron syntax"),
        ("0 9 L * *", "the day-of-month field is not standard cron syntax"),
        ("0 9 15W * *", "the day-of-month field is not standard cron syntax"),
        ("0 9 * * 5L", "the day-of-week field is not standard cron syntax"),
        ("0 9 * * MON#2", "the day-of-week field is not standard cron syntax"),
        ("0 9 ? * MON", "the day-of-month field is not standard cron syntax"),
        ("5/15 * * * *", "the minute field is not standard cron syntax"),  # step after a value
        ("1-2-3 * * * *", "the minute field is not standard cron syntax"),
        ("0 9 * * ,", "the day-of-week field is not standard cron syntax"),
    ],
)
def test_invalid_says_why_and_what_is_accepted(expression: str, why: str) -> None:
    with pytest.raises(InvalidCronError) as caught:
        normalize_cron(expression)
    assert str(caught.value) == f"Invalid cron expression: {why}; {ACCEPTED}"


def test_the_message_names_every_accepted_form() -> None:
    for form in ("5 fields", "*/15", "1-5", "1,15", "JAN", "MON-FRI", "@hourly", "@yearly"):
        assert form in ACCEPTED


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("* * * * *", 60),
        ("*/5 * * * *", 300),
        ("0,1 9 * * *", 60),
        ("0 9 * * *", 86400),
        ("0 9 29 2 *", 86400),
        ("0 0,23 * * *", 3600),  # 23:00 → 00:00 next day
        ("0 0,23 * * 1", 23 * 3600),  # Mondays only: never two days running
        ("0 0,23 * * 1,2", 3600),  # Monday 23:00 → Tuesday 00:00
        ("0 0,23 31 * *", 23 * 3600),  # no month has 31 followed by 31
        ("0 0,23 1,31 * *", 3600),  # the 31st → the 1st
    ],
)
def test_min_interval(expression: str, seconds: int) -> None:
    assert min_interval_seconds(expression) == seconds


def test_next_run_in_a_time_zone() -> None:
    after = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)  # a Sunday
    assert next_run_after("0 9 * * *", "UTC", after) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert next_run_after("0 9 * * *", "Europe/Berlin", after) == datetime(
        2026, 11, 30, 8, 0, tzinfo=UTC
    )
    assert next_run_after("0 9 * * 1-5", "America/New_York", after) == datetime(
        2026, 11, 30, 14, 0, tzinfo=UTC
    )
    # Strictly after: a time exactly on the schedule moves to the next slot.
    on_slot = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert next_run_after("0 9 * * *", "UTC", on_slot) == datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_next_run_across_daylight_saving() -> None:
    # Berlin moves to summer time on 2027-03-28: 09:00 local is 08:00 UTC before, 07:00 after.
    before = next_run_after("0 9 * * *", "Europe/Berlin", datetime(2027, 3, 27, 0, tzinfo=UTC))
    after = next_run_after("0 9 * * *", "Europe/Berlin", datetime(2027, 3, 28, 0, tzinfo=UTC))
    assert before.hour == 8
    assert after.hour == 7


def test_timezones() -> None:
    assert is_valid_timezone("UTC")
    assert is_valid_timezone("Asia/Kolkata")
    assert not is_valid_timezone("Asia/Atlantis")
    assert not is_valid_timezone("../../etc/passwd")


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/Argentina/Salta", "US/Eastern"])
def test_iana_names_and_their_aliases_are_zones(name: str) -> None:
    assert is_valid_timezone(name)


@pytest.mark.parametrize(
    "name", ["localtime", "Factory", "posixrules", "posix/Europe/Berlin", "right/UTC", "zone.tab"]
)
def test_host_files_that_are_not_iana_zones_are_refused(name: str) -> None:
    assert not is_valid_timezone(name)


def test_next_run_after_parses_once_and_agrees_with_croniter() -> None:
    """next_run_after reuses each expression's parse: the times are croniter's own, across
    zones, DST changes and day-of-month/day-of-week unions."""
    import random
    import zoneinfo

    from croniter import croniter

    from torale.tasks.schedule import next_run_after

    expressions = [
        "0 9 * * *",
        "*/15 * * * *",
        "30 2 * * 0",
        "0 9 * * 1-5",
        "5 4 29 2 *",
        "0 0 31 * 1",
        "15 1,2,3 * * *",
        "0 2 * 3 SUN",
        "0-30/5 * * * MON-FRI",
    ]
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
    chance = random.Random(16)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    for _ in range(500):
        expression, zone = chance.choice(expressions), chance.choice(zones)
        after = start + timedelta(minutes=chance.randrange(10 * 365 * 24 * 60))
        local = after.astimezone(zoneinfo.ZoneInfo(zone))
        expected = croniter(expression, local).get_next(datetime).astimezone(UTC)
        assert next_run_after(expression, zone, after) == expected
        assert next_run_after(expression, zone, after) == expected  # from the cached parse
