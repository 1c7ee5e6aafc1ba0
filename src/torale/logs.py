"""Logging for `torale serve` and `torale worker`.

Messages often carry text from outside (URLs, page titles, provider errors): line breaks are
escaped, in tracebacks too, so nobody can forge log lines.

No channel secret reaches the log, at any level:

* The libraries that log request URLs, request lines or notification URLs are silent at every
  level (`SILENT`): httpx and httpcore log each request's full URL, urllib3 and requests log
  request paths (the token of a Slack or Discord webhook is its path), and Apprise logs a URL
  it cannot read in full at ERROR and tokens it finds invalid at WARNING. What Torale needs of
  them it logs itself, without the URL.
* In every line Torale writes, URLs show their scheme and host only (`redact_urls`): the path,
  query, user and password of a URL are often its credentials, and an Apprise URL's "host"
  is usually a token, so only the scheme of those is kept.
* The database drivers, whose debug lines carry statement parameters (channel secrets), and
  the model SDKs only speak from WARNING.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SILENT = ("httpx", "httpcore", "urllib3", "requests", "apprise")
# One-time sign-in links carry their secret in the query string (`/signin?token=…`), and so
# does the identity provider's answer (`/signin/oidc/callback?code=…`), which the access log
# would print: the value is replaced wherever `token=`, or `code=` as a query parameter, appears.
_TOKEN_VALUE = re.compile(r"((?:token|[?&]code)=)[^&\s\"']+", re.IGNORECASE)
# Feed URLs carry their token in the path (`/feeds/<token>/…`): replaced the same way.
_FEED_TOKEN = re.compile(r"(/feeds/)[^/\s\"'?#]+")
_QUIET = (
    "openai",
    "anthropic",
    "google_genai",
    # Database drivers log statements with their parameters (webhook headers, Apprise URLs).
    "aiosqlite",
    "asyncpg",
    "sqlalchemy",
    "aiosmtplib",
)
_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{1,30})://([^\s\"'<>]*)")
_HOST = re.compile(r"^(?:[^@/?#]*@)?(\[[^\]]*\]|[^/?#:@]*)(:\d+)?")


def _redact(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    if scheme.lower() not in ("http", "https"):
        return f"{scheme}://…" if rest else match.group(0)
    host = _HOST.match(rest)
    kept = (host.group(1) + (host.group(2) or "")) if host else ""
    return f"{scheme}://{kept}" + ("/…" if len(kept) < len(rest) else "")


def redact_urls(text: str) -> str:
    """`text` with every URL cut to its scheme and host (http, https) or its scheme (others)."""
    return _URL.sub(_redact, text)


class OneLineFormatter(logging.Formatter):
    """One line per record: CR and LF are escaped in the message and in tracebacks too, whose
    last line quotes the exception's text (a provider's error, a user's model name); URLs are
    cut to their scheme and host, and the value of any `token=` (or `code=`) and a feed URL's
    token are redacted."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record).replace("\r", "\\r").replace("\n", "\\n")
        line = _TOKEN_VALUE.sub(r"\1[redacted]", redact_urls(line))
        return _FEED_TOKEN.sub(r"\1[redacted]", line)


def silence_secret_bearing_loggers() -> None:
    """Make the libraries in SILENT log nothing, whoever configured logging (also called when
    an app is built, so that embedding Torale or a test's log capture gets the same)."""
    for name in SILENT:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    silence_secret_bearing_loggers()


SLOW_STEP_SECONDS = 5.0
_steps = logging.getLogger("torale.shutdown")


@contextlib.contextmanager
def slow_step(what: str, seconds: float = SLOW_STEP_SECONDS) -> Iterator[None]:
    """Log a warning naming `what` (a step of stopping the process) when it takes longer than
    `seconds`, so that a slow or stuck shutdown says where it waits."""
    started = time.monotonic()
    try:
        yield
    finally:
        took = time.monotonic() - started
        if took > seconds:
            _steps.warning("stopping: %s took %.1f s", what, took)
