"""Notifications as an Atom feed (RFC 4287), written with feedgen.

An entry is one notification: its title is the task's name and the answer, its content (HTML)
the answer, what changed, the diff when there is one and the sources as links. Everything
from outside (answers, page titles, diffs, URLs) is text: escaped into the HTML, which is
escaped again into the XML, so a reader shows it and never runs it; characters XML cannot
carry are dropped, and only http(s) sources become links. Ids are `urn:uuid:` URIs that never
change: an entry's is its execution's, a feed's is derived from its user or task (not from
the token, which may be rotated).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from html import escape

from feedgen.feed import FeedGenerator

from torale import __version__
from torale.feeds.service import Entry, Notifications

MEDIA_TYPE = "application/atom+xml"
TITLE_ANSWER_CHARS = 120
_FEED_IDS = uuid.UUID("4d0f8d1e-6a57-4c1b-9d0e-2b5f3c9a7e61")  # namespace of the feeds' ids
# XML 1.0 allows tab, LF, CR and these ranges, nothing else (lxml refuses the rest).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: str) -> str:
    return _NOT_XML.sub("", value)


@dataclass(frozen=True, slots=True)
class FeedLinks:
    """Where a feed is (`self`: its own URL) and what it is about (`page`: the web app's)."""

    base_url: str  # the server, without a trailing slash
    self_url: str

    def task_page(self, task_id: uuid.UUID) -> str:
        return f"{self.base_url}/tasks/{task_id}"


def feed_id(user_id: uuid.UUID, task_id: uuid.UUID | None) -> str:
    name = f"tasks/{task_id}" if task_id is not None else f"users/{user_id}/notifications"
    return uuid.uuid5(_FEED_IDS, name).urn


def _title(entry: Entry) -> str:
    answer = " ".join(entry.answer.split())
    if len(answer) > TITLE_ANSWER_CHARS:
        answer = answer[: TITLE_ANSWER_CHARS - 1].rstrip() + "…"
    return f"{entry.task_name}: {answer}" if answer else entry.task_name


def _is_web_url(url: str) -> bool:
    return url.lower().startswith(("https://", "http://"))


def content_html(entry: Entry) -> str:
    """The entry's content, as HTML in which every value is escaped."""
    parts = [f"<p>{escape(entry.answer)}</p>"]
    if entry.change_summary:
        parts.append(f"<p><strong>What changed:</strong> {escape(entry.change_summary)}</p>")
    if entry.diff:
        parts.append(f"<p><strong>Diff:</strong></p><pre>{escape(entry.diff)}</pre>")
    if entry.sources:
        items = []
        for source in entry.sources:
            url = str(source.get("url") or "")
            label = escape(str(source.get("title") or url))
            if _is_web_url(url):
                items.append(f'<li><a href="{escape(url)}">{label}</a></li>')
            else:
                items.append(f"<li>{label} ({escape(url)})</li>")
        parts.append("<p><strong>Sources:</strong></p><ul>" + "".join(items) + "</ul>")
    return "".join(parts)


def updated_at(notifications: Notifications, fallback: datetime) -> datetime:
    """When the feed last changed: its newest entry's time, or `fallback` without entries."""
    return max((e.at for e in notifications.entries), default=fallback)


def render(
    notifications: Notifications,
    *,
    user_id: uuid.UUID,
    links: FeedLinks,
    updated: datetime,
) -> bytes:
    """The feed's document (UTF-8)."""
    task = notifications.task
    feed = FeedGenerator()
    feed.id(feed_id(user_id, task.id if task else None))
    feed.title(xml_text(f"Torale: {task.name}" if task else "Torale: your notifications"))
    feed.subtitle(
        xml_text(f"When {task.condition_description}")
        if task
        else "Every notification of your Torale tasks"
    )
    feed.author({"name": "Torale"})
    feed.generator("Torale", version=__version__)
    feed.link(href=links.self_url, rel="self", type=MEDIA_TYPE)
    alternate = links.task_page(task.id) if task else f"{links.base_url}/tasks"
    feed.link(href=alternate, rel="alternate", type="text/html")
    feed.updated(updated)
    for item in notifications.entries:  # newest first
        entry = feed.add_entry(order="append")
        entry.id(item.execution_id.urn)
        entry.title(xml_text(_title(item)))
        entry.updated(item.at)
        entry.published(item.at)
        entry.link(href=links.task_page(item.task_id), rel="alternate", type="text/html")
        entry.summary(xml_text(item.answer) or None)
        entry.content(xml_text(content_html(item)), type="html")
    document: bytes = feed.atom_str(pretty=False)
    return document
