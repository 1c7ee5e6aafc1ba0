"""Watch tasks from the SDK's builder and the CLI's options: conditions from short
expressions, selectors paired with URLs."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from torale.cli.client import watch_options
from torale.sdk.builder import condition_for, monitor


@pytest.mark.parametrize(
    ("text", "condition"),
    [
        ("price < 50", {"kind": "number", "op": "<", "value": 50.0}),
        ("number >= 1299.5", {"kind": "number", "op": ">=", "value": 1299.5}),
        ("!= 3", {"kind": "number", "op": "!=", "value": 3.0}),
        ("price drops 10%", {"kind": "number", "op": "drop_pct", "value": 10.0}),
        ('contains "In stock"', {"kind": "text", "op": "contains", "value": "In stock"}),
        ("not contains 'Sold out'", {"kind": "text", "op": "not_contains", "value": "Sold out"}),
        (
            'matches "^Only \\d+ left"',
            {"kind": "text", "op": "matches", "value": "^Only \\d+ left"},
        ),
    ],
)
def test_conditions_from_expressions(text: str, condition: dict[str, Any]) -> None:
    assert condition_for(text) == condition


def test_an_unreadable_expression_says_how_to_write_one() -> None:
    with pytest.raises(ValueError, match="price < 50"):
        condition_for("cheaper than 50")


def test_the_builder_makes_watch_tasks() -> None:
    request = (
        monitor()
        .watching("https://shop.example/p", "#price")
        .watching("https://shop.example/q")
        .when_all("price < 50", 'contains "In stock"')
        .request()
    )
    assert "search_query" not in request
    assert request["urls"] == [
        {"url": "https://shop.example/p", "selector": "#price"},
        "https://shop.example/q",
    ]
    assert request["mode"] == "rules"
    assert request["rules"]["match"] == "all"
    assert len(request["rules"]["conditions"]) == 2
    changed = monitor().watching("https://a.example").when_changed(only="additions").request()
    assert changed["mode"] == "change"
    assert changed["change"] == {"only": "additions"}


def test_cli_watch_options() -> None:
    fields = watch_options(["https://a.example", "https://b.example"], ["#p"], False, ["< 5"], True)
    assert fields["urls"] == [{"url": "https://a.example", "selector": "#p"}, "https://b.example"]
    assert fields["rules"] == {"match": "any", "conditions": [condition_for("< 5")]}
    assert watch_options(["https://a.example"], None, True, None, False) == {"mode": "change"}
    with pytest.raises(typer.BadParameter):
        watch_options([], ["#p"], True, None, False)
    with pytest.raises(typer.BadParameter):
        watch_options(["https://a.example"], None, True, ["< 5"], False)
