"""Line diffs of watched text: what change mode compares, what notifications and the diffs API
show. Pure functions."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from torale.watch.patterns import found

MAX_UNIFIED_CHARS = 4000  # a notification's diff is trimmed to this


@dataclass(frozen=True, slots=True)
class LineDiff:
    added: list[str]
    removed: list[str]
    unified: str  # unified diff text (empty when nothing changed)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def _kept(text: str, ignore_lines: list[str]) -> list[str]:
    lines = text.splitlines()
    if not ignore_lines:
        return lines
    return [line for line in lines if not any(found(p, line) for p in ignore_lines)]


def line_diff(
    before: str, after: str, *, label: str = "", ignore_lines: list[str] | None = None
) -> LineDiff:
    """Lines added and removed from `before` to `after`, with lines matching any of
    `ignore_lines` left out of both."""
    old = _kept(before, ignore_lines or [])
    new = _kept(after, ignore_lines or [])
    if old == new:
        return LineDiff([], [], "")
    unified = list(
        difflib.unified_diff(
            old, new, fromfile=f"{label} (before)", tofile=f"{label} (after)", lineterm="", n=2
        )
    )
    added = [line[1:] for line in unified[2:] if line.startswith("+")]
    removed = [line[1:] for line in unified[2:] if line.startswith("-")]
    return LineDiff(added, removed, "\n".join(unified))


def counts(diff: LineDiff, only: str | None) -> bool:
    """Whether `diff` is a change under the filter `only` (additions, removals or None)."""
    if only == "additions":
        return bool(diff.added)
    if only == "removals":
        return bool(diff.removed)
    return diff.changed


def trimmed(unified: str, limit: int = MAX_UNIFIED_CHARS) -> str:
    """`unified` cut at a line boundary to at most about `limit` characters, saying so."""
    if len(unified) <= limit:
        return unified
    cut = unified[:limit].rsplit("\n", 1)[0]
    rest = unified[len(cut) :].count("\n")
    return f"{cut}\n… ({rest} more lines)"
