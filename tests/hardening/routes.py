"""The app's route table, read from its OpenAPI document: tests that loop over it cover routes
added later without being edited."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

METHODS = ("get", "post", "put", "patch", "delete")
PUBLIC_PATHS = frozenset({"/health", "/metrics"})


@dataclass(frozen=True)
class Operation:
    method: str  # upper case
    path: str  # the template, e.g. /api/v1/tasks/{task_id}
    spec: dict[str, Any]

    @property
    def authenticated(self) -> bool:
        return bool(self.spec.get("security"))

    @property
    def admin(self) -> bool:
        return self.path.startswith("/admin/") or "admin" in self.spec.get("tags", [])

    @property
    def has_body(self) -> bool:
        return "requestBody" in self.spec

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)

    @property
    def documented(self) -> set[int]:
        return {int(code) for code in self.spec.get("responses", {}) if code.isdigit()}

    def url(self, values: dict[str, str]) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            assert name in values, f"no test value for {{{name}}} in {self}: add one"
            return values[name]

        return re.sub(r"\{(\w+)\}", value, self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def operations(app: FastAPI) -> list[Operation]:
    found = []
    for path, items in app.openapi()["paths"].items():
        for method, spec in items.items():
            if method in METHODS:
                found.append(Operation(method.upper(), path, spec))
    assert len(found) >= 20, "the route table looks empty"
    return found
