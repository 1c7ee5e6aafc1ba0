"""The `Retry-After` header, written and read in one place (standard library only: the SDK
reads it too).

The server always sends whole seconds. Readers accept seconds (fractions too, as some servers
send them) and the HTTP-date form (RFC 9110 §10.2.3); anything else is no hint.
"""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime


def retry_after_header(seconds: float) -> str:
    """The header value for a wait of `seconds`: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait for a `Retry-After` value (never negative); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # an HTTP-date is always GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
