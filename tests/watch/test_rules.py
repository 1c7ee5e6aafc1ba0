"""Rules on watched text: text conditions, numbers in currency and locale formats, drop_pct,
all/any; change filters on line diffs."""

from __future__ import annotations

from typing import Any

import pytest

from torale.watch.diff import counts, line_diff, trimmed
from torale.watch.rules import check_target, first_number


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("$1,299.00", 1299.0),
        ("1.299,00 €", 1299.0),
        ("Price: 49,99 € incl. VAT", 49.99),
        ("EUR 1 299,50", 1299.5),
        ("£45", 45.0),
        ("Title without digits\nNow only 12.50 USD", 12.5),
        ("nothing here", None),
    ],
)
def test_first_number_understands_currency_and_locale_formats(
    text: str, number: float | None
) -> None:
    assert first_number(text) == number


def rules(*conditions: dict[str, Any], match: str = "all") -> dict[str, Any]:
    return {"match": match, "conditions": list(conditions)}


@pytest.mark.parametrize(
    ("condition", "text", "met"),
    [
        ({"kind": "text", "op": "contains", "value": "in stock"}, "Espresso\nIn Stock", True),
        ({"kind": "text", "op": "contains", "value": "in stock"}, "Sold out", False),
        ({"kind": "text", "op": "not_contains", "value": "Sold out"}, "In stock", True),
        ({"kind": "text", "op": "not_contains", "value": "Sold out"}, "SOLD OUT", False),
        ({"kind": "text", "op": "matches", "value": r"^only \d+ left$"}, "x\nOnly 3 left", True),
        ({"kind": "text", "op": "matches", "value": r"^only \d+ left$"}, "Only few left", False),
        ({"kind": "number", "op": "<", "value": 50}, "$49.99", True),
        ({"kind": "number", "op": "<", "value": 50}, "$50.00", False),
        ({"kind": "number", "op": "<=", "value": 50}, "50,00 €", True),
        ({"kind": "number", "op": ">", "value": 1000}, "1.299,00 €", True),
        ({"kind": "number", "op": ">=", "value": 1300}, "$1,299.00", False),
        ({"kind": "number", "op": "==", "value": 1299}, "$1,299.00", True),
        ({"kind": "number", "op": "!=", "value": 1299}, "$1,299.00", False),
        ({"kind": "number", "op": "<", "value": 50}, "no price", False),
    ],
)
def test_each_condition(condition: dict[str, Any], text: str, met: bool) -> None:
    assert check_target(rules(condition), text, None).met is met


def test_drop_pct_compares_with_the_previous_number() -> None:
    drop = rules({"kind": "number", "op": "drop_pct", "value": 10})
    assert not check_target(drop, "$100", None).met  # nothing to compare with yet
    assert not check_target(drop, "$95", {"number": 100.0}).met
    assert check_target(drop, "$90", {"number": 100.0}).met
    assert not check_target(drop, "$120", {"number": 100.0}).met
    assert check_target(drop, "$90", None).state == {"number": 90.0}


def test_all_and_any() -> None:
    both = (
        {"kind": "text", "op": "contains", "value": "In stock"},
        {"kind": "number", "op": "<", "value": 50},
    )
    assert check_target(rules(*both), "In stock\n$45", None).met
    assert not check_target(rules(*both), "In stock\n$55", None).met
    assert check_target(rules(*both, match="any"), "In stock\n$55", None).met
    assert not check_target(rules(*both, match="any"), "Sold out\n$55", None).met


def test_line_diff_with_filters() -> None:
    before = "Espresso\nPrice $10\nServed at 10:00"
    after = "Espresso\nPrice $12\nServed at 10:05\nNew colour"
    diff = line_diff(before, after, ignore_lines=[r"^served at"])
    assert diff.added == ["Price $12", "New colour"]
    assert diff.removed == ["Price $10"]
    assert "+New colour" in diff.unified
    assert counts(diff, None)
    assert counts(diff, "additions")
    assert counts(diff, "removals")
    noise_only = line_diff(before, before.replace("10:00", "11:00"), ignore_lines=["^served"])
    assert not noise_only.changed
    removal = line_diff("a\nb", "a")
    assert counts(removal, "removals")
    assert not counts(removal, "additions")
    addition = line_diff("a", "a\nb")
    assert counts(addition, "additions")
    assert not counts(addition, "removals")


def test_trimmed_diffs_say_how_much_is_left_out() -> None:
    long = "\n".join(f"+line {i}" for i in range(2000))
    short = trimmed(long, 100)
    assert len(short) < 130
    assert short.endswith("more lines)")
    assert trimmed("+a", 100) == "+a"
