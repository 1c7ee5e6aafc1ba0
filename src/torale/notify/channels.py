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
    url: str = Field(min_length=1, max_length=2048, description="https URL the event is POSTed to.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=20,
        description="Extra request headers. Values are shown masked in responses.",
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
    address: EmailStr = Field(description="Where the email is sent.")


NotificationChannel = Annotated[WebhookChannel | EmailChannel, Field(discriminator="type")]


def stored_channels(channels: list[WebhookChannel | EmailChannel]) -> list[dict[str, Any]]:
    """The form channels are kept in: secrets included."""
    return [c.model_dump(mode="json", context={"reveal_secrets": True}) for c in channels]


def restore_masked_headers(
    new: list[dict[str, Any]], old: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Where a client echoed the mask for a header of the same webhook URL, keep the real value."""
    previous = {c["url"]: c.get("headers", {}) for c in old if c.get("type") == "webhook"}
    restored = []
    for channel in new:
        if channel.get("type") == "webhook" and channel.get("url") in previous:
            known = previous[channel["url"]]
            headers = {
                name: known[name] if value == MASK and name in known else value
                for name, value in channel.get("headers", {}).items()
            }
            channel = {**channel, "headers": headers}
        restored.append(channel)
    return restored
