"""Whether a run notifies, per its notify_behavior (docs/api.md §6, step 4). Pure functions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from torale.engine.evaluate import Verdict


@dataclass(frozen=True, slots=True)
class Decision:
    notify: bool
    change_summary: str | None
    complete_task: bool  # `once`: the task is done after its first notification


def _normal(value: Any) -> Any:
    """A form of a state value in which changes of case, spacing and key order vanish."""
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    if isinstance(value, dict):
        return {str(k).casefold(): _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def state_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """What changed meaningfully between two states, a line each ("key: old → new")."""
    old = {str(k).casefold(): (k, v) for k, v in (before or {}).items()}
    new = {str(k).casefold(): (k, v) for k, v in (after or {}).items()}
    lines = []
    for key in sorted(old.keys() | new.keys()):
        if key not in new:
            lines.append(f"{old[key][0]}: {_show(old[key][1])} → (gone)")
        elif key not in old:
            lines.append(f"{new[key][0]}: {_show(new[key][1])} (new)")
        elif _normal(old[key][1]) != _normal(new[key][1]):
            lines.append(f"{new[key][0]}: {_show(old[key][1])} → {_show(new[key][1])}")
    return lines


def decide(
    *,
    notify_behavior: str,
    verdict: Verdict,
    was_met: bool,
    previous_state: dict[str, Any] | None,
    hint: str | None = None,
) -> Decision:
    """`hint` (a model run whose pages changed: what changed, from the model or the diff) is
    the change summary where the decision has nothing more precise than "the condition is
    met"; the state's own changes come first."""
    if not verdict.condition_met:
        return Decision(notify=False, change_summary=None, complete_task=False)
    if notify_behavior == "once":
        summary = hint or "The condition is met."
        return Decision(notify=True, change_summary=summary, complete_task=True)
    if notify_behavior == "always":
        changes = state_changes(previous_state, verdict.current_state)
        summary = "; ".join(changes) if changes and was_met else hint or "The condition is met."
        return Decision(notify=True, change_summary=summary, complete_task=False)
    # track_state: on becoming met, then only when the state changes meaningfully.
    if not was_met:
        summary = hint or "The condition is now met."
        return Decision(notify=True, change_summary=summary, complete_task=False)
    changes = state_changes(previous_state, verdict.current_state)
    if not changes:
        return Decision(notify=False, change_summary=None, complete_task=False)
    return Decision(notify=True, change_summary="; ".join(changes), complete_task=False)
