"""Logging for `torale serve` and `torale worker`.

Messages often carry text from outside (URLs, page titles, provider errors): line breaks in it
are escaped so nobody can forge log lines. httpx logs every request's full URL at INFO, and
webhook URLs can carry their service's token, so its loggers only speak from WARNING.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_QUIET = ("httpx", "httpcore", "openai", "anthropic", "google_genai", "apprise")


class OneLineFormatter(logging.Formatter):
    """Escapes CR and LF in the message (tracebacks keep their lines: they are ours)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = record.message.replace("\r", "\\r").replace("\n", "\\n")
        return super().formatMessage(record)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
