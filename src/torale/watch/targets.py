"""A task's URL targets: a page, optionally the selector of the part that is watched, and
optionally how it is read (`render`: `plain` or `browser`; unset: as the task says).

Stored in the task's `urls` column as given: a plain string for a whole page (what every task
saved before selectors existed holds) and `{"url", "selector", "render"}` (only the keys set)
otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    selector: str | None = None
    render: str | None = None  # plain | browser; None: the task's `render`

    @property
    def key(self) -> str:
        """What identifies this target across runs (its snapshots, its page cache entry)."""
        return self.url if self.selector is None else f"{self.url}\n{self.selector}"

    @property
    def label(self) -> str:
        """How messages and states name it."""
        return self.url if self.selector is None else f"{self.url} [{self.selector}]"

    def stored(self) -> str | dict[str, str]:
        if self.selector is None and self.render is None:
            return self.url
        stored = {"url": self.url}
        if self.selector is not None:
            stored["selector"] = self.selector
        if self.render is not None:
            stored["render"] = self.render
        return stored


def targets_of(stored: list[Any]) -> list[Target]:
    """The targets of a task's `urls` column (strings and/or objects)."""
    targets = []
    for item in stored:
        if isinstance(item, str):
            targets.append(Target(item))
        else:
            targets.append(
                Target(str(item["url"]), item.get("selector") or None, item.get("render") or None)
            )
    return targets


def stored_targets(targets: list[Target]) -> list[str | dict[str, str]]:
    """The `urls` column for `targets`, repeats dropped, order kept."""
    return [t.stored() for t in dict.fromkeys(targets)]
