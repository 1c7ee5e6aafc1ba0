"""The notify decision and what counts as a change of state (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from torale.engine.decide import decide, state_changes
from torale.engine.evaluate import Evidence, Verdict
from torale.engine.run import TaskSpec, fingerprint


def verdict(met: bool, state: dict[str, Any]) -> Verdict:
    return Verdict(
        answer="a", condition_met=met, current_state=state, reasoning="r", confidence=1, sources=[]
    )


@pytest.mark.parametrize(
    ("before", "after", "changes"),
    [
        ({"date": "Sept 9"}, {"date": "Sept 9"}, []),
        ({"date": "Sept 9"}, {"Date": "  sept   9 "}, []),
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, []),
        ({"date": "Sept 9"}, {"date": "Sept 16"}, ['date: "Sept 9" → "Sept 16"']),
        ({"date": "Sept 9"}, {}, ['date: "Sept 9" → (gone)']),
        (None, {"price": 999}, ["price: 999 (new)"]),
        ({"n": {"x": "A"}}, {"n": {"x": "a"}}, []),
        ({"n": {"x": "A"}}, {"n": {"x": "B"}}, ['n: {"x": "A"} → {"x": "B"}']),
    ],
)
def test_state_changes(
    before: dict[str, Any] | None, after: dict[str, Any], changes: list[str]
) -> None:
    assert state_changes(before, after) == changes


def test_not_met_never_notifies() -> None:
    for behavior in ("once", "always", "track_state"):
        decision = decide(
            notify_behavior=behavior, verdict=verdict(False, {}), was_met=True, previous_state={}
        )
        assert not decision.notify


def test_once_completes() -> None:
    decision = decide(
        notify_behavior="once", verdict=verdict(True, {}), was_met=False, previous_state=None
    )
    assert (decision.notify, decision.complete_task) == (True, True)


def test_track_state() -> None:
    became = decide(
        notify_behavior="track_state",
        verdict=verdict(True, {"d": 1}),
        was_met=False,
        previous_state={"d": 1},
    )
    assert became.notify
    same = decide(
        notify_behavior="track_state",
        verdict=verdict(True, {"d": 1}),
        was_met=True,
        previous_state={"d": 1},
    )
    assert not same.notify
    changed = decide(
        notify_behavior="track_state",
        verdict=verdict(True, {"d": 2}),
        was_met=True,
        previous_state={"d": 1},
    )
    assert changed.notify
    assert changed.change_summary == "d: 1 → 2"


def test_fingerprint_depends_on_what_the_verdict_depends_on() -> None:
    spec = TaskSpec("n", "query", "condition", [], {})
    evidence = [Evidence("https://a/", "A", "text", "h1"), Evidence("https://b", "B", "t", "h2")]
    base = fingerprint(spec=spec, model="m", evidence=evidence)
    assert fingerprint(spec=spec, model="m", evidence=list(reversed(evidence))) == base
    assert fingerprint(spec=spec, model="m2", evidence=evidence) != base
    other = TaskSpec("n", "query", "other condition", [], {})
    assert fingerprint(spec=other, model="m", evidence=evidence) != base
    changed = [evidence[0], Evidence("https://b", "B", "t2", "h3")]
    assert fingerprint(spec=spec, model="m", evidence=changed) != base
    assert fingerprint(spec=spec, model="m", evidence=evidence[:1]) != base


@pytest.mark.parametrize(
    ("behavior", "was_met", "before", "summary"),
    [
        ("once", False, None, "the page now names a date"),
        ("always", False, None, "the page now names a date"),
        ("always", True, {"date": "Sept 9"}, 'date: "Sept 9" → "Sept 16"'),
        ("track_state", False, None, "the page now names a date"),
        ("track_state", True, {"date": "Sept 9"}, 'date: "Sept 9" → "Sept 16"'),
    ],
)
def test_the_hint_says_what_changed_where_the_state_does_not(
    behavior: str, was_met: bool, before: dict[str, Any] | None, summary: str
) -> None:
    decision = decide(
        notify_behavior=behavior,
        verdict=verdict(True, {"date": "Sept 16"}),
        was_met=was_met,
        previous_state=before,
        hint="the page now names a date",
    )
    assert decision.change_summary == summary
