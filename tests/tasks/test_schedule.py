"""Cron parsing, the shortest gap between runs, and next-run times in a time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from torale.tasks.schedule import (
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
    ],
)
def test_normalize(given: str, stored: str) -> None:
    assert normalize_cron(given) == stored


@pytest.mark.parametrize(
    "expression",
    ["", "x", "* * * *", "0 0 * * * *", "60 * * * *", "0 24 * * *", "@every 5m", "0 9 31 2 *"],
)
def test_invalid(expression: str) -> None:
    with pytest.raises(InvalidCronError, match="Invalid cron expression"):
        normalize_cron(expression)


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
