"""Request and response bodies of the feed token routes (docs/api.md §7)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class FeedTokenRead(BaseModel):
    active: bool = Field(description="Whether you have a feed token, and so feed URLs that work.")
    created_at: datetime | None = Field(description="When the token was made; null without one.")


class FeedTokenCreated(BaseModel):
    token: str = Field(
        description="The feed token. Shown only in this response (it is stored as a hash): the "
        "URLs below carry it."
    )
    created_at: datetime
    notifications_url: str = Field(description="The Atom feed of all your notifications.")
    task_url_template: str = Field(
        description="The Atom feed of one task's notifications: replace `{task_id}`."
    )
