"""Rules every input shares, whichever schema it arrives in (docs/api.md §1).

* **Text** (`TEXT`, or the `Text` type): no NUL character (`\\u0000`, which PostgreSQL cannot
  store) and no lone surrogate (`\\udfff`, which is not Unicode and cannot be encoded as UTF-8).
  Every string field of every request schema carries it, so a bad string is a 422 at its field
  before anything is written; tests/test_inputs.py checks that no request schema leaves one out.
* **Free JSON** (`Context`): the same text rules for every string and key inside, no `NaN` or
  `Infinity` (not JSON), and at most `MAX_CONTEXT_BYTES` once serialized.
* **Times** (`UtcDateTime`): a date or a date-time without a zone is read as UTC.
* **Text from outside** (pages, search results, model answers) is not refused but cleaned:
  `clean_text` drops NUL characters and replaces lone surrogates.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, JsonValue
from pydantic_core import PydanticCustomError

MAX_CONTEXT_BYTES = 16 * 1024
_SURROGATES = re.compile("[\ud800-\udfff]")

NUL_MESSAGE = "Text must not contain NUL characters (\\u0000)"
SURROGATE_MESSAGE = (
    "Text must be valid Unicode: it contains a lone surrogate (an escape such as \\udfff "
    "that is half of a pair)"
)


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None."""
    if "\x00" in value:
        return NUL_MESSAGE
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def _check_text(value: Any) -> Any:
    # Runs before the string validation, so it sees raw input: anything else is left to it.
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise PydanticCustomError("text_invalid", problem)
    return value


TEXT = BeforeValidator(_check_text)
"""The text rules, for `Annotated[str, …, TEXT]` (and `EmailStr`, and dict keys)."""

Text = Annotated[str, TEXT]


def _json_problem(value: JsonValue) -> str | None:
    """What makes free JSON unacceptable: a bad string or key, or a number JSON cannot hold."""
    pending: list[JsonValue] = [value]
    while pending:  # no recursion: the depth is bounded by the body parser, but stay safe
        item = pending.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return problem
        elif isinstance(item, float) and not math.isfinite(item):
            return "Numbers must be finite: NaN and Infinity are not JSON"
        elif isinstance(item, dict):
            for key, inner in item.items():
                problem = text_problem(key)
                if problem:
                    return problem
                pending.append(inner)
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _check_context(value: JsonValue) -> JsonValue:
    problem = _json_problem(value)
    if problem:
        raise PydanticCustomError("context_invalid", problem)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_CONTEXT_BYTES:
        raise PydanticCustomError(
            "context_too_large",
            "context is {size} bytes as compact JSON; the limit is {limit} bytes",
            {"size": size, "limit": MAX_CONTEXT_BYTES},
        )
    return value


Context = Annotated[JsonValue, AfterValidator(_check_context)]
"""Free JSON a user attaches to a task: any value, within the rules above."""


def _assume_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_assume_utc)]
"""A time; a date (`2026-01-01`) or a time without a zone is read as UTC."""


def clean_text(value: str) -> str:
    """Text from outside (a page, a search result) as it can be stored: NUL characters dropped,
    lone surrogates replaced by U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATES.sub("\ufffd", value)
    return value


def clean_json(value: Any) -> Any:
    """`clean_text` for every string and key of a JSON-like value (a model's answer)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(item) for item in value]
    return value
