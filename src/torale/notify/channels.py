"""Notification channels a task may name, as request/response schemas.

Webhook header values often carry credentials, so responses mask them. A client that sends a
task back with the mask in place keeps the stored value (see `restore_masked_headers`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    FieldSerializationInfo,
    field_serializer,
    field_validator,
)

from torale.inputs import TEXT, Text

MASK = "********"
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
# Headers Torale sets itself on every delivery; a channel cannot replace them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


class WebhookChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"]
    url: Text = Field(
        min_length=1, max_length=2048, description="https URL the event is POSTed to."
    )
    headers: dict[Text, Text] = Field(
        default_factory=dict,
        max_length=20,
        description="Extra request headers. Values are shown masked in responses.",
    )
    enabled: bool = Field(
        default=True,
        description="Turned off by Torale when the receiver answers 410 Gone; set it back to "
        "true to resume.",
    )

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header_value in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"Invalid header name {name!r}")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"Header {name!r} is set by Torale and cannot be overridden")
            if len(header_value) > 4096 or any(ch in header_value for ch in "\r\n\0"):
                raise ValueError(f"Invalid value for header {name!r}")
        return value

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


def apprise_url_problem(url: str) -> str | None:
    """Why Apprise cannot use `url`, or None."""
    import apprise  # imported here: loading its plugins takes a moment

    if not apprise.Apprise().add(url):
        return "Not a notification URL Apprise supports (see its documentation for formats)"
    return None


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
