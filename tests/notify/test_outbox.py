"""The notification message and the diff read back from it (what feeds show)."""

from __future__ import annotations

from typing import Any

import pytest

from torale.notify.outbox import diff_of_notification, notification_message
from torale.watch.diff import line_diff, trimmed

SOURCES = [
    {"url": "https://example.com/a", "title": "A"},
    {"url": "https://b.example/", "title": ""},
]
DIFF = line_diff(
    "Price: $59\n\nDiff:\nIn stock\n",
    "Price: $49\n\nDiff:\nIn stock\n",
    label="https://example.com/a",
).unified


@pytest.mark.parametrize(
    ("answer", "summary", "sources", "diff"),
    [
        ("Met.", None, [], None),
        ("Met.", "Now met.", SOURCES, None),
        ("Met.", "Now met.", SOURCES, DIFF),
        ("Met.", None, [], DIFF),
        ("An answer\n\nDiff:\nthat looks like one", None, [], None),
        ("An answer\n\nDiff:\nthat looks like one", "x\n\nDiff:\n", SOURCES, DIFF),
        ("Changed.", None, SOURCES, trimmed("\n".join(["--- a", "+++ b"] + ["+x"] * 2000), 100)),
    ],
)
@pytest.mark.parametrize("name", ["Price", "", "Met.\n\nDiff:\n--- a: Met."])
def test_the_diff_is_read_back_exactly(
    name: str, answer: str, summary: str | None, sources: list[dict[str, Any]], diff: str | None
) -> None:
    message = notification_message(
        task_name=name, answer=answer, change_summary=summary, sources=sources, diff=diff
    )
    found = diff_of_notification(message, answer=answer, change_summary=summary, sources=sources)
    assert found == diff


def test_a_message_of_other_values_carries_no_diff() -> None:
    message = notification_message(
        task_name="T", answer="Met.", change_summary=None, sources=[], diff=DIFF
    )
    assert diff_of_notification(message, answer="Other.", change_summary=None, sources=[]) is None
    assert diff_of_notification("", answer="Met.", change_summary=None, sources=[]) is None
