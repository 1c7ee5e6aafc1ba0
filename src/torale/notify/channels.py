"""Notification channels a task may name, as request/response schemas.

Webhook header values often carry credentials, so responses mask them. A client that sends a
task back with the mask in place keeps the stored value (see `restore_masked_headers`).

A channel's own headers are checked when it is saved: never one Torale sets itself
(`TORALE_HEADERS`) or one that belongs to the HTTP connection and the message framing
(`TRANSPORT_HEADERS`: sending them would make a malformed or smuggled request), and values
of visible ASCII, spaces and tabs only (anything else fails every delivery).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    FieldSerializationInfo,
    field_serializer,
)
from pydantic_core import PydanticCustomError

from torale.inputs import TEXT, Text

MASK = "********"
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
# Visible ASCII, space and tab: what every HTTP client sends as it is.
_HEADER_VALUE = re.compile(r"^[\x20-\x7e\t]{0,4096}$")
# Headers Torale sets itself on every webhook delivery; a channel cannot replace them.
TORALE_HEADERS = frozenset(
    {"content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature"}
)
# Headers of the connection and the message framing, which the HTTP client owns.
TRANSPORT_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "content-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "http2-settings",
        "te",
        "trailer",
        "expect",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
RESERVED_HEADERS = TORALE_HEADERS | TRANSPORT_HEADERS


def header_name_problem(name: str) -> str | None:
    """Why a channel may not send a header called `name`, or None."""
    if not _HEADER_NAME.match(name):
        return f"Invalid header name {name!r}"
    if name.lower() in TORALE_HEADERS:
        return f"Header {name!r} is set by Torale and cannot be overridden"
    if name.lower() in TRANSPORT_HEADERS:
        return f"Header {name!r} belongs to the HTTP connection and cannot be set"
    return None


def header_value_problem(value: str) -> str | None:
    """Why a channel may not send `value` as a header's value, or None."""
    if not _HEADER_VALUE.match(value):
        return (
            "A header value must be at most 4096 characters of visible ASCII, spaces and tabs "
            "(no line breaks, control or non-ASCII characters)"
        )
    return None


def _header_name(name: str) -> str:
    problem = header_name_problem(name)
    if problem:
        raise PydanticCustomError("header_refused", problem)
    return name


def _header_value(value: str) -> str:
    problem = header_value_problem(value)
    if problem:
        raise PydanticCustomError("header_refused", problem)
    return value


HeaderName = Annotated[str, TEXT, AfterValidator(_header_name)]
HeaderValue = Annotated[str, TEXT, AfterValidator(_header_value)]


class WebhookChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"]
    url: Text = Field(
        min_length=1, max_length=2048, description="https URL the event is POSTed to."
    )
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        max_length=20,
        description="Extra request headers. Values are shown masked in responses. Headers "
        "Torale sets (`content-type`, `user-agent`, `webhook-*`) and headers of the connection "
        "(`host`, `content-length`, `transfer-encoding`, `connection`, `upgrade`, `te`, "
        "`trailer`, `expect`, `content-encoding`, `proxy-authorization`, …) are refused; values "
        "are visible ASCII, spaces and tabs.",
    )
    enabled: bool = Field(
        default=True,
        description="Turned off by Torale when the receiver answers 410 Gone; set it back to "
        "true to resume.",
    )

    @field_serializer("headers")
    def _mask_headers(self, value: dict[str, str], info: FieldSerializationInfo) -> dict[str, str]:
        if info.context and info.context.get("reveal_secrets"):
            return value
        return dict.fromkeys(value, MASK)


class EmailChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["email"]
    address: Annotated[EmailStr, TEXT] = Field(description="Where the email is sent.")


def mask_apprise_url(url: str) -> str:
    """An Apprise URL carries its service's credentials: show only the service."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    return f"{scheme}://{MASK}"


class AppriseChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["apprise"]
    url: Text = Field(
        min_length=3,
        max_length=2048,
        description="An Apprise notification URL (`slack://…`, `tgram://…`, `mailto://…`, "
        "`json://…`). Shown masked in responses.",
    )

    @field_serializer("url")
    def _mask_url(self, value: str, info: FieldSerializationInfo) -> str:
        if info.context and info.context.get("reveal_secrets"):
            return value
        return mask_apprise_url(value)


NotificationChannel = Annotated[
    WebhookChannel | EmailChannel | AppriseChannel, Field(discriminator="type")
]
AnyChannel = WebhookChannel | EmailChannel | AppriseChannel


def stored_channels(channels: list[AnyChannel]) -> list[dict[str, Any]]:
    """The form channels are kept in: secrets included."""
    return [c.model_dump(mode="json", context={"reveal_secrets": True}) for c in channels]


def restore_masked_secrets(
    new: list[dict[str, Any]], old: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Where a client sent back what a response showed, keep the real secret.

    A masked header of a webhook with the same URL keeps its stored value; a masked Apprise URL
    keeps the stored URL of the Apprise channel at the same position.
    """
    previous = {c["url"]: c.get("headers", {}) for c in old if c.get("type") == "webhook"}
    restored = []
    for index, channel in enumerate(new):
        if channel.get("type") == "webhook" and channel.get("url") in previous:
            known = previous[channel["url"]]
            headers = {
                name: known[name] if value == MASK and name in known else value
                for name, value in channel.get("headers", {}).items()
            }
            channel = {**channel, "headers": headers}
        elif channel.get("type") == "apprise" and index < len(old):
            before = old[index]
            if before.get("type") == "apprise" and channel["url"] == mask_apprise_url(
                before["url"]
            ):
                channel = {**channel, "url": before["url"]}
        restored.append(channel)
    return restored
