"""Users' regular expressions (rules' `matches`, change filters' `ignore_lines`).

They run on page text in the worker, so they use the `regex` library, which takes a time
limit: a pattern that backtracks catastrophically fails its run instead of holding a worker.
"""

from __future__ import annotations

import functools
from typing import Any

import regex

TIME_LIMIT_SECONDS = 0.5


class PatternTimeoutError(Exception):
    """A pattern took longer than the time limit on the watched text."""


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a usable regular expression, or None."""
    try:
        _compiled(pattern)
    except regex.error as exc:
        return f"Not a regular expression: {exc.msg}" if hasattr(exc, "msg") else str(exc)
    return None


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern, regex.IGNORECASE | regex.MULTILINE)


def found(pattern: str, text: str) -> bool:
    """Whether `pattern` is found in `text` (case-insensitive, ^ and $ per line)."""
    try:
        return _compiled(pattern).search(text, timeout=TIME_LIMIT_SECONDS) is not None
    except TimeoutError:
        raise PatternTimeoutError(
            f"The pattern {pattern!r} took too long on the watched text: simplify it"
        ) from None
