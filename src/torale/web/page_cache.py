"""Rendered pages, kept for reuse while nothing they show changed.

A page is cached under a key that names everything it shows: whose it is (the user's id, and
the email and role the header shows), which page (filters, page number, task), and the state of
the data it was rendered from:

- the tasks page shows the user's tasks with their last runs: the user's `tasks_version`, which
  database triggers move on every write to the user's tasks and executions, in any process;
- a task page also shows its runs' notifications (deliveries, which move no version): the
  change watch's mark for the user (`db.changes`), which moves with any change of their rows.

So a hit is exactly what rendering again would give. The one thing a page holds that is the
browser's own, its session's CSRF token, is rendered as a random placeholder and filled in on
every answer; times are rendered absolute (app.js makes them relative in the browser), so a
cached page never says "5 min ago" an hour later. Without a change watch (`changes.caching`
False) nothing is cached. Old keys are never asked for again and age out of the LRU.
"""

from __future__ import annotations

import secrets
import uuid
from collections import OrderedDict
from typing import NamedTuple

from torale.auth.lookup import AuthenticatedUser
from torale.db.changes import ChangeWatch
from torale.statuses import TaskState


class TasksPageKey(NamedTuple):
    user_id: uuid.UUID
    tasks_version: int
    email: str | None
    role: str
    state: TaskState | None
    text: str
    page: int
    fragment: bool  # only the list (an htmx filter or search)


class TaskPageKey(NamedTuple):
    user_id: uuid.UUID
    task_id: uuid.UUID
    tasks_version: int
    mark: int
    email: str | None
    role: str


PageKey = TasksPageKey | TaskPageKey


def tasks_page_key(
    user: AuthenticatedUser, *, state: TaskState | None, text: str, page: int, fragment: bool
) -> TasksPageKey:
    return TasksPageKey(
        user.id, user.tasks_version, user.email, user.role, state, text, page, fragment
    )


def task_page_key(user: AuthenticatedUser, task_id: uuid.UUID, changes: ChangeWatch) -> TaskPageKey:
    """Taken before the task is read: what is read is then at least as new as the key."""
    changes.check()
    return TaskPageKey(
        user.id, task_id, user.tasks_version, changes.mark(user.id), user.email, user.role
    )


class CachedPage(NamedTuple):
    parts: tuple[bytes, ...]  # the page, cut where the CSRF token goes

    def fill(self, csrf_token: str) -> bytes:
        return csrf_token.encode().join(self.parts)

    @property
    def size(self) -> int:
        return sum(len(part) for part in self.parts)


class PageCache:
    def __init__(self, max_bytes: int, changes: ChangeWatch) -> None:
        self.max_bytes = max_bytes
        self.changes = changes
        # Random per process: no text a user writes can be taken for it.
        self.placeholder = "csrf" + secrets.token_hex(16)
        self._entries: OrderedDict[PageKey, CachedPage] = OrderedDict()
        self._size = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.changes.caching

    def get(self, key: PageKey) -> CachedPage | None:
        page = self._entries.get(key)
        if page is not None:
            self._entries.move_to_end(key)
        return page

    def put(self, key: PageKey, html: str) -> CachedPage:
        """Cut the page at its placeholders and keep it (if it fits); returns it either way."""
        page = CachedPage(tuple(part.encode() for part in html.split(self.placeholder)))
        size = page.size
        if not self.enabled or size > self.max_bytes // 4:
            return page  # one huge page must not flush everything else
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= old.size
        self._entries[key] = page
        self._size += size
        while self._size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= evicted.size
        return page

    def __len__(self) -> int:
        return len(self._entries)
