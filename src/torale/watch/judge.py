"""How `change` and `rules` tasks decide, from what a run read and what the previous one did.

The result has the shape of a model's verdict (condition met, current state, answer,
reasoning), so notify_behavior, track_state and the record step work the same for every mode.
`current_state` holds what was extracted per URL target: for `change` the text (or its start
and hash), for `rules` the number and each text condition's result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torale.watch.diff import LineDiff, counts, line_diff, trimmed
from torale.watch.rules import check_target
from torale.watch.snapshots import Snapshot

STATE_TEXT_CHARS = 200
FIRST_CHECK = "First check: the watched content is recorded as the baseline."
# What a preview of a change task says when it has nothing to compare with.
NOTHING_TO_COMPARE = (
    "Baseline: nothing to compare with yet (a new task, or one without a stored run); the first "
    "run records what it reads as the baseline and notifies from the next change on."
)


@dataclass(frozen=True, slots=True)
class Judgement:
    condition_met: bool
    current_state: dict[str, Any]
    answer: str
    reasoning: str
    diff: str | None  # unified diff against the previous run's text, trimmed (None: no change)
    # Rules: each condition on each target, whether it held: {url, selector, condition, held,
    # detail}. Empty for change.
    checks: list[dict[str, Any]] = field(default_factory=list)


def _diffs(
    snapshots: list[Snapshot], previous: dict[str, str], ignore_lines: list[str]
) -> list[tuple[Snapshot, LineDiff | None]]:
    """Each snapshot with its diff from the previous run's text (None: no previous text)."""
    return [
        (
            s,
            line_diff(
                previous[s.target.key], s.text, label=s.target.label, ignore_lines=ignore_lines
            )
            if s.target.key in previous
            else None,
        )
        for s in snapshots
    ]


def _unified(diffs: list[tuple[Snapshot, LineDiff | None]]) -> str | None:
    text = "\n".join(d.unified for _, d in diffs if d is not None and d.changed)
    return trimmed(text) if text else None


def changes_since(
    snapshots: list[Snapshot], previous: dict[str, str], ignore_lines: list[str] | None = None
) -> str | None:
    """The unified diff (trimmed) of every snapshot whose target has a previous text; None
    when none changed."""
    return _unified(_diffs(snapshots, previous, ignore_lines or []))


def summarize_changes(snapshots: list[Snapshot], previous: dict[str, str]) -> str | None:
    """In words, which targets' text changed since `previous` and by how many lines; None when
    none did (a target without a previous text is not a change)."""
    parts = []
    for s, d in _diffs(snapshots, previous, []):
        if d is not None and d.changed:
            parts.append(f"{s.target.label} ({_counted(len(d.added), len(d.removed))})")
    return ("The pages changed since the last check: " + "; ".join(parts)) if parts else None


def _counted(added: int, removed: int) -> str:
    """'1 line added, 2 removed'."""
    return f"{added} line{'' if added == 1 else 's'} added, {removed} removed"


def _state_text(text: str, digest: str) -> str:
    if len(text) <= STATE_TEXT_CHARS:
        return text
    return f"{text[:STATE_TEXT_CHARS]}… (sha256 {digest[:16]})"


def judge_change(
    snapshots: list[Snapshot], previous: dict[str, str], filters: dict[str, Any] | None
) -> Judgement:
    """Met when a target's text differs from the previous run's (filters applied). A target
    without a previous text records its baseline and does not count."""
    filters = filters or {}
    diffs = _diffs(snapshots, previous, filters.get("ignore_lines", []))
    only = filters.get("only")
    changed = [s for s, d in diffs if d is not None and counts(d, only)]
    baseline = [s for s, d in diffs if d is None]
    state = {s.target.label: _state_text(s.text, s.content_hash) for s in snapshots}
    if changed:
        added = sum(len(d.added) for _, d in diffs if d is not None)
        removed = sum(len(d.removed) for _, d in diffs if d is not None)
        answer = f"The watched content changed ({_counted(added, removed)}): " + ", ".join(
            s.target.label for s in changed
        )
        return Judgement(True, state, answer, answer, _unified(diffs))
    if baseline and len(baseline) == len(snapshots):
        answer = FIRST_CHECK
    elif baseline:
        answer = "No change; new targets recorded as their baseline: " + ", ".join(
            s.target.label for s in baseline
        )
    else:
        answer = "No change in the watched content."
    return Judgement(False, state, answer, answer, None)


def judge_rules(
    snapshots: list[Snapshot],
    rules: dict[str, Any],
    previous_state: dict[str, Any] | None,
    previous: dict[str, str],
) -> Judgement:
    """Met when at least one target satisfies the rules (all or any of their conditions)."""
    state: dict[str, Any] = {}
    met_at: list[str] = []
    reasoning: list[str] = []
    checks: list[dict[str, Any]] = []
    for s in snapshots:
        earlier = (previous_state or {}).get(s.target.label)
        check = check_target(rules, s.text, earlier if isinstance(earlier, dict) else None)
        state[s.target.label] = check.state
        reasoning.append(f"{s.target.label}: " + "; ".join(check.reasons))
        checks += [
            {
                "url": s.target.url,
                "selector": s.target.selector,
                "condition": c.condition,
                "held": c.held,
                "detail": c.detail,
            }
            for c in check.checks
        ]
        if check.met:
            met_at.append(s.target.label)
    answer = ("The rules are met at " + ", ".join(met_at)) if met_at else "The rules are not met."
    diff = changes_since(snapshots, previous)
    return Judgement(bool(met_at), state, answer, "\n".join(reasoning), diff, checks)
