"""Snapshot and diff responses (docs/api.md §5, "Sources and diffs")."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field


class SourceRead(BaseModel):
    """One source a run read, with the hash of the text it read."""

    url: str
    selector: str | None
    title: str
    content_hash: str = Field(
        description="SHA-256 of the text read (hex); equal hashes, same text."
    )
    size: int = Field(description="Length of the text in bytes (UTF-8).")
    screenshot: str | None = Field(
        default=None,
        description="Path of the PNG screenshot of the page as the browser showed it (tasks "
        "with `screenshot`, pages read with `render: browser`); null without one.",
    )


class SourceDiff(BaseModel):
    url: str
    selector: str | None
    before_hash: str | None = Field(description="Null: the earlier run did not read it.")
    after_hash: str | None = Field(description="Null: the later run did not read it.")
    added: list[str] = Field(description="Lines in the later text that are not in the earlier.")
    removed: list[str] = Field(description="Lines of the earlier text that are gone.")
    unified: str = Field(description="Unified diff text; empty when nothing changed.")


class DiffRead(BaseModel):
    task_id: uuid.UUID
    from_execution_id: uuid.UUID
    to_execution_id: uuid.UUID
    changed: bool
    sources: list[SourceDiff] = Field(description="Every source either run read, in order.")
    unified: str = Field(description="The sources' unified diffs together.")
