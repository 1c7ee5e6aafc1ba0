"""Logging for `torale serve` and `torale worker`.

Messages often carry text from outside (URLs, page titles, provider errors): line breaks are
escaped, in tracebacks too, so nobody can forge log lines. httpx logs every request's full URL at
INFO, and webhook URLs can carry their service's token, so its loggers only speak from WARNING;
so do the database drivers, whose debug lines carry statement parameters (channel secrets).
"""

from __future__ import annotations

import logging
import re

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# One-time sign-in links carry their secret in the query string (`/signin?token=…`), which the
# access log would print: the value is replaced wherever `token=` appears.
_TOKEN_VALUE = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)
_QUIET = (
    "httpx",
    "httpcore",
    "openai",
    "anthropic",
    "google_genai",
    "apprise",
    # Database drivers log statements with their parameters (webhook headers, Apprise URLs).
    "aiosqlite",
    "asyncpg",
    "sqlalchemy",
    "aiosmtplib",
)


class OneLineFormatter(logging.Formatter):
    """One line per record: CR and LF are escaped in the message and in tracebacks too, whose
    last line quotes the exception's text (a provider's error, a user's model name); the value
    of any `token=` is redacted."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record).replace("\r", "\\r").replace("\n", "\\n")
        return _TOKEN_VALUE.sub(r"\1[redacted]", line)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
