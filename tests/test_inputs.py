"""The shared input rules (torale/inputs.py), and that every request schema uses them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError

from torale import inputs
from torale.app import create_app
from torale.config import Settings
from torale.inputs import MAX_CONTEXT_BYTES, Context, Text, UtcDateTime, clean_text

_GUARDS = {inputs._check_text, inputs._check_context}


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router
            yield from _api_routes(route.original_router.routes)


def _unguarded_strings(schema: Any) -> list[str]:
    """Paths in a pydantic core schema to string validators that the text rules do not wrap."""
    definitions: dict[str, Any] = {}
    found: list[str] = []
    seen: set[tuple[str, bool]] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "definitions":
                for definition in node["definitions"]:
                    definitions[definition["ref"]] = definition
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    def walk(node: Any, path: str, guarded: bool) -> None:
        if isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]", guarded)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if kind == "str" and not guarded:
            found.append(path)
        if kind and str(kind).startswith("function-"):
            function = node.get("function", {}).get("function")
            guarded = guarded or function in _GUARDS
        if kind == "definition-ref":
            ref = node["schema_ref"]
            if (ref, guarded) not in seen:
                seen.add((ref, guarded))
                walk(definitions[ref], f"{path}->{ref.split(':')[0]}", guarded)
            return
        for key, value in node.items():
            if key not in ("definitions", "metadata", "serialization", "function"):
                walk(value, f"{path}.{key}", guarded)

    collect(schema)
    walk(schema, "", False)
    return found


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    data = tmp_path_factory.mktemp("inputs")
    return create_app(Settings(_env_file=None, data_dir=Path(data), secret_key="k"))


def test_every_text_input_of_every_route_follows_the_text_rules(app: FastAPI) -> None:
    checked, problems = 0, []
    for route in _api_routes(app.routes):
        params = route.dependant.body_params + route.dependant.query_params
        for param in params:
            annotation = param.field_info.annotation
            assert annotation is not None
            schema = TypeAdapter(annotation).core_schema
            checked += 1
            for path in _unguarded_strings(schema):
                problems.append(f"{sorted(route.methods or ())} {route.path} {param.name}{path}")
    assert checked >= 10, "no request schemas found: the route walk is broken"
    assert not problems, "strings without the text rules (use inputs.TEXT):\n" + "\n".join(problems)


def test_the_walk_finds_a_plain_string() -> None:
    from pydantic import BaseModel

    class Plain(BaseModel):
        ok: Text
        bad: dict[Text, str]

    [path] = _unguarded_strings(Plain.__pydantic_core_schema__)
    assert path.endswith(".fields.bad.schema.values_schema")


@pytest.mark.parametrize("value", ["a\x00b", "\x00", "x\udfff", "\ud800"])
def test_text_refuses_nul_and_lone_surrogates(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(Text).validate_python(value)
    assert caught.value.errors()[0]["type"] == "text_invalid"


def test_text_accepts_any_other_unicode() -> None:
    value = "tab\tline\nemoji \U0001f600 é ß \u200b"
    assert TypeAdapter(Text).validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    [
        {"a": float("nan")},
        [1, float("inf")],
        float("-inf"),
        {"k\x00": 1},
        {"k": ["\x00"]},
        {"\udfff": 1},
        [[["\udfff"]]],
    ],
)
def test_context_refuses_what_json_or_text_cannot_hold(value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(Context).validate_python(value)
    assert caught.value.errors()[0]["type"] == "context_invalid"


def test_context_is_capped_when_serialized() -> None:
    adapter = TypeAdapter(Context)
    overhead = len('{"k":""}')
    fits = {"k": "x" * (MAX_CONTEXT_BYTES - overhead)}
    assert adapter.validate_python(fits) == fits
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python({"k": "x" * (MAX_CONTEXT_BYTES - overhead + 1)})
    assert caught.value.errors()[0]["type"] == "context_too_large"
    # Bytes, not characters: é is two.
    with pytest.raises(ValidationError):
        adapter.validate_python({"k": "é" * (MAX_CONTEXT_BYTES // 2)})


def test_times_without_a_zone_are_utc() -> None:
    adapter = TypeAdapter(UtcDateTime)
    assert adapter.validate_python("2026-01-01") == datetime(2026, 1, 1, tzinfo=UTC)
    assert adapter.validate_python(date(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert adapter.validate_python("2026-01-01T10:00") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert adapter.validate_python("2026-01-01T10:00+02:00") == datetime(2026, 1, 1, 8, tzinfo=UTC)


def test_clean_text() -> None:
    assert clean_text("a\x00b\x00") == "ab"
    assert clean_text("x\udfffy") == "x\ufffdy"
    assert clean_text("plain é \U0001f600") == "plain é \U0001f600"
