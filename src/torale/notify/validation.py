"""Where notifications may go: the checks a channel or webhook URL passes when it is saved,
as field errors (422 at the field). Task channels, the webhook settings and the webhook test
all use these; the senders check again when they send."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torale.errors import field_error
from torale.net import OutboundPolicy, UnsafeURLError
from torale.notify.apprise_guard import apprise_url_problem
from torale.notify.channels import MASK


def url_error(url: str, policy: OutboundPolicy, loc: Sequence[str | int]) -> dict[str, Any] | None:
    """The field error for a URL the policy refuses, as far as the URL tells, or None."""
    try:
        policy.check_url(url)
    except UnsafeURLError as exc:
        return field_error(loc, str(exc), "url_refused")
    return None


def channel_errors(channels: list[dict[str, Any]], policy: OutboundPolicy) -> list[dict[str, Any]]:
    """Field errors of a task's channels (stored form, secrets restored), at
    `body.notifications.<index>…`."""
    errors = []
    for index, channel in enumerate(channels):
        at: list[str | int] = ["body", "notifications", index]
        if channel["type"] == "apprise":
            if MASK in channel["url"]:
                problem: str | None = (
                    "Send the real Apprise URL: the mask only keeps the URL already saved at "
                    "this position"
                )
            else:
                problem = apprise_url_problem(channel["url"], policy)
            if problem:
                errors.append(field_error([*at, "url"], problem, "url_refused"))
            continue
        if channel["type"] != "webhook":
            continue
        refused = url_error(channel["url"], policy, [*at, "url"])
        if refused:
            errors.append(refused)
        for name, value in channel.get("headers", {}).items():
            if value == MASK:
                errors.append(
                    field_error(
                        [*at, "headers", name],
                        "Send the header's real value: the mask only keeps a value already saved "
                        "for this webhook URL",
                        "value_error",
                    )
                )
    return errors
