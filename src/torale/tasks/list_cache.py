"""Serialised pages of task lists and single tasks, keyed by the owner's `tasks_version`.

The version comes with the caller at authentication and moves on (by database trigger) with
every write to the user's tasks and their executions in any process, so a hit is exactly what a
fresh query would return; old versions are never read again and age out of the LRU.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import NamedTuple


class ListKey(NamedTuple):
    user_id: uuid.UUID
    tasks_version: int
    page: int
    limit: int
    state: str | None
    is_active: bool | None


class TaskKey(NamedTuple):
    user_id: uuid.UUID
    tasks_version: int
    task_id: uuid.UUID


class TaskListCache:
    def __init__(self, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[ListKey | TaskKey, bytes] = OrderedDict()
        self._size = 0

    def get(self, key: ListKey | TaskKey) -> bytes | None:
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
        return body

    def put(self, key: ListKey | TaskKey, body: bytes) -> None:
        if len(body) > self.max_bytes // 4:
            return  # one huge page must not flush everything else (and 0 bytes: no cache)
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= len(old)
        self._entries[key] = body
        self._size += len(body)
        while self._size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted)

    def __len__(self) -> int:
        return len(self._entries)
