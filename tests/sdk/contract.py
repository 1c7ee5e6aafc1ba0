"""Compares a response schema of the server's OpenAPI document with the SDK model that reads it.

`Contract(server_defs, sdk_defs).problems(where, server_schema, sdk_schema)` lists every way the
SDK could fail to read, or fall behind, what the server's schema allows:

- a field of the server's model the SDK's does not have (it would be reachable only as an
  unknown extra), a field the SDK has and the server does not, a field the SDK requires and the
  server does not promise;
- a type the SDK cannot read (a string where the SDK wants a number, a format that differs, a
  nullable field the SDK does not accept null for, an object the SDK cannot hold);
- a value of an enum the SDK does not list among its known values;
- an SDK model that refuses unknown fields (it must keep them: `extra="allow"`), an enum the SDK
  types as a closed `Literal` (a value a newer server adds would fail: `Literal[...] | str`),
  a discriminated union without a catch-all for a kind added later.

Both sides are JSON schemas: the server's from `app.openapi()`, the SDK's from pydantic
(`TypeAdapter(model).json_schema()`), each with its own definitions for `$ref`s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Schema = Mapping[str, Any]
Named = tuple[str | None, Schema]  # a schema, and the name of the definition it came from
_SHAPE = {"type", "anyOf", "oneOf", "allOf", "enum", "const", "properties", "items"}


def _values(schema: Schema) -> set[Any] | None:
    """The fixed values a string schema allows (`enum` or `const`), or None for any string."""
    if "enum" in schema:
        return set(schema["enum"])
    if "const" in schema:
        return {schema["const"]}
    return None


def _any(schema: Schema) -> bool:
    """`{}` (with only annotations): any JSON value."""
    return not _SHAPE & schema.keys()


def _describe(schema: Schema) -> str:
    if _any(schema):
        return "any value"
    values = _values(schema)
    if values is not None:
        return f"one of {sorted(values)}"
    return str(schema.get("type", "?"))


class Contract:
    def __init__(self, server_defs: Mapping[str, Schema], sdk_defs: Mapping[str, Schema]) -> None:
        self._defs = {"server": server_defs, "sdk": sdk_defs}
        self._models: dict[tuple[str, str], list[str]] = {}

    # -- schemas --------------------------------------------------------------------------

    def _resolve(self, side: str, schema: Schema) -> Named:
        name = None
        while "$ref" in schema:
            name = str(schema["$ref"]).rsplit("/", 1)[-1]
            annotations = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**self._defs[side][name], **annotations}
        return name, schema

    def _alternatives(self, side: str, schema: Schema) -> list[Named]:
        name, resolved = self._resolve(side, schema)
        for key in ("anyOf", "oneOf"):
            if key in resolved:
                return [alt for part in resolved[key] for alt in self._alternatives(side, part)]
        if "allOf" in resolved and len(resolved["allOf"]) == 1:
            return self._alternatives(side, resolved["allOf"][0])
        return [(name, resolved)]

    # -- comparison -----------------------------------------------------------------------

    def problems(
        self, where: str, server: Schema, sdk: Schema, *, pinned: bool = False
    ) -> list[str]:
        """Why the SDK's `sdk` cannot read every value the server's `server` allows (sorted,
        without repeats). `pinned`: the field is a union's discriminator, fixed per model."""
        return sorted(set(self._field(where, server, sdk, pinned=pinned)))

    def _field(self, where: str, server: Schema, sdk: Schema, *, pinned: bool = False) -> list[str]:
        _, resolved = self._resolve("server", server)
        discriminator = resolved.get("discriminator", {}).get("propertyName")
        server_alts = self._alternatives("server", server)
        sdk_alts = self._alternatives("sdk", sdk)
        found: list[str] = []
        for server_name, one in server_alts:
            tried = [
                (
                    other.get("type") != one.get("type"),  # report the closest alternative
                    self._accepts(where, server_name, one, sdk_name, other, discriminator),
                )
                for sdk_name, other in sdk_alts
            ]
            if all(problems for _, problems in tried):  # no SDK alternative reads this one
                found += min(tried, key=lambda t: (t[0], len(t[1])))[1]
        found += self._closed_values(where, server_alts, sdk_alts, pinned=pinned)
        if discriminator:
            found += self._catch_all(where, discriminator, sdk_alts)
        return found

    def _accepts(
        self,
        where: str,
        server_name: str | None,
        server: Schema,
        sdk_name: str | None,
        sdk: Schema,
        discriminator: str | None,
    ) -> list[str]:
        if _any(sdk):
            return []
        if _any(server):
            return [f"{where}: the server may send any JSON value, the SDK reads {_describe(sdk)}"]
        kind, sdk_kind = server.get("type"), sdk.get("type")
        wrong = [f"{where}: the server sends {_describe(server)}, the SDK reads {_describe(sdk)}"]
        if kind in ("null", "boolean"):
            return [] if sdk_kind == kind else wrong
        if kind == "integer":
            return [] if sdk_kind in ("integer", "number") else wrong
        if kind == "number":
            return [] if sdk_kind == "number" else wrong
        if kind == "string":
            if sdk_kind != "string":
                return wrong
            if "format" in sdk and sdk["format"] != server.get("format"):
                return [
                    f"{where}: the server sends a string of format {server.get('format')}, "
                    f"the SDK reads format {sdk['format']}"
                ]
            values, known = _values(server), _values(sdk)
            if known is not None and (values is None or not values <= known):
                return wrong
            return []
        if kind == "array":
            if sdk_kind != "array":
                return wrong
            return self._field(f"{where}[]", server.get("items", {}), sdk.get("items", {}))
        if kind == "object":
            if sdk_kind != "object":
                return wrong
            return self._object(where, server_name, server, sdk_name, sdk, discriminator)
        return [f"{where}: a server schema this check does not know: {dict(server)}"]

    def _object(
        self,
        where: str,
        server_name: str | None,
        server: Schema,
        sdk_name: str | None,
        sdk: Schema,
        discriminator: str | None,
    ) -> list[str]:
        fields, sdk_fields = server.get("properties"), sdk.get("properties")
        sdk_label = sdk_name or sdk.get("title") or where
        if fields is None:  # a free-form object (a dict, or a model the server dumps freely)
            if sdk_fields is not None:
                required = sorted(sdk.get("required", []))
                if sdk.get("additionalProperties") is not True:
                    return [f"{where}: the SDK's {sdk_label} would refuse the server's free keys"]
                if required:
                    return [f"{where}: the server promises no keys; the SDK requires {required}"]
                return []
            return self._field(
                f"{where}{{}}",
                _value_schema(server.get("additionalProperties", True)),
                _value_schema(sdk.get("additionalProperties", True)),
            )
        if sdk_fields is None:
            value = _value_schema(sdk.get("additionalProperties", True))
            return [] if _any(value) else [f"{where}: the SDK reads a dict of {_describe(value)}"]

        name = server_name or server.get("title") or where
        key = (name, str(sdk_label))
        if key in self._models:
            return self._models[key]
        self._models[key] = []  # a model that contains itself compares as fine inside itself
        found: list[str] = []
        if sdk.get("additionalProperties") is not True:
            found.append(
                f"{name}: the SDK's {sdk_label} refuses fields a newer server adds "
                '(it must keep them: extra="allow")'
            )
        for field, schema in fields.items():
            if field not in sdk_fields:
                found.append(f"{name}.{field}: the server sends it; the SDK's {sdk_label} lacks it")
                continue
            found += self._field(
                f"{name}.{field}", schema, sdk_fields[field], pinned=field == discriminator
            )
        found += [
            f"{name}.{field}: the SDK's {sdk_label} has it; the server's schema does not"
            for field in sdk_fields.keys() - fields.keys()
        ]
        found += [
            f"{name}.{field}: the SDK's {sdk_label} requires it; the server does not promise it"
            for field in set(sdk.get("required", [])) - set(server.get("required", []))
        ]
        self._models[key] = found
        return found

    def _closed_values(
        self, where: str, server_alts: list[Named], sdk_alts: list[Named], *, pinned: bool
    ) -> list[str]:
        """A field with fixed values: the SDK lists them all, and reads a new one too."""
        values: set[Any] = set()
        for _, one in server_alts:
            values |= _values(one) or set()
        if not values:
            return []
        strings = [other for _, other in sdk_alts if other.get("type") == "string" or _any(other)]
        known: set[Any] = set()
        for other in strings:
            known |= _values(other) or set()
        found = []
        if not values <= known:
            found.append(
                f"{where}: the SDK does not list {sorted(values - known)} among its known values"
            )
        open_ = any(_values(other) is None for other in strings)
        if not pinned and not open_:
            found.append(
                f"{where}: the SDK reads only {sorted(known)}; a value a newer server adds would "
                "fail (type it Literal[...] | str)"
            )
        return found

    def _catch_all(self, where: str, discriminator: str, sdk_alts: list[Named]) -> list[str]:
        """A discriminated union needs a model for the kinds added after this SDK."""
        for _, other in sdk_alts:
            field = other.get("properties", {}).get(discriminator)
            if field is not None and other.get("type") == "object":
                kinds = self._alternatives("sdk", field)
                if any(k.get("type") == "string" and _values(k) is None for _, k in kinds):
                    return []
        return [
            f"{where}: no SDK model reads a {discriminator!r} a newer server adds "
            "(add a catch-all model)"
        ]


def _value_schema(additional: Any) -> Schema:
    return {} if additional is True or additional is None else additional
