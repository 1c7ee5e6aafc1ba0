"""Where feeds are: `/feeds/<token>/notifications.atom` (all of a user's notifications) and
`/feeds/<token>/tasks/<task_id>.atom` (one task's), under TORALE_PUBLIC_URL when it is set and
else under the address the request came to."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from torale.config import Settings

FEEDS = "/feeds"
TASK_PLACEHOLDER = "{task_id}"


def base_url(settings: Settings, request: Request) -> str:
    """The server's address as people reach it, without a trailing slash."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def notifications_url(base: str, token: str) -> str:
    return f"{base}{FEEDS}/{token}/notifications.atom"


def task_url(base: str, token: str, task_id: str) -> str:
    return f"{base}{FEEDS}/{token}/tasks/{task_id}.atom"


@dataclass(frozen=True, slots=True)
class FeedUrls:
    """A token's feed URLs: all notifications, and one task's (`{task_id}` to fill in)."""

    notifications_url: str
    task_url_template: str

    @classmethod
    def of(cls, base: str, token: str) -> FeedUrls:
        return cls(notifications_url(base, token), task_url(base, token, TASK_PLACEHOLDER))

    def task(self, task_id: object) -> str:
        return self.task_url_template.replace(TASK_PLACEHOLDER, str(task_id))
