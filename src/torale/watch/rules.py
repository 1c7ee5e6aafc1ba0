"""Rules: deterministic conditions over the watched text or the first number in it.

The shape (validated by `tasks.schemas.Rules`): `{"match": "all" | "any", "conditions":
[{"kind": "text", "op": "contains" | "not_contains" | "matches", "value": str},
{"kind": "number", "op": "<" | "<=" | ">" | ">=" | "==" | "!=" | "drop_pct", "value": n}]}`.
Conditions are checked on each URL target's text separately; the rules are met when at least one
target satisfies all (or any) of them. Numbers are read with price-parser, which knows currency
and locale formats (`$1,299.00`, `1.299,00 €`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from torale.watch.patterns import found

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def first_number(text: str) -> float | None:
    """The first price or number in `text`, or None."""
    from price_parser import Price

    for line in text.splitlines():
        if any(c.isdigit() for c in line):
            amount: Decimal | None = Price.fromstring(line).amount
            if amount is not None:
                return float(amount)
    return None


@dataclass(frozen=True, slots=True)
class ConditionCheck:
    """One condition on one target's text: whether it held, and what was read."""

    condition: dict[str, Any]
    held: bool
    detail: str  # e.g. "number < 50 (it is 49.99)"


@dataclass(frozen=True, slots=True)
class TargetCheck:
    met: bool
    state: dict[str, Any]  # what was read: the number, and each text condition's result
    checks: list[ConditionCheck]

    @property
    def reasons(self) -> list[str]:
        return [("✓ " if c.held else "✗ ") + c.detail for c in self.checks]


def _describe(condition: dict[str, Any]) -> str:
    value = condition["value"]
    if condition["op"] == "drop_pct":
        return f"number dropped by at least {value:g}%"
    if condition["kind"] == "number":
        return f"number {condition['op']} {value:g}"
    return f"text {condition['op']} {value!r}"


def check_target(rules: dict[str, Any], text: str, previous: dict[str, Any] | None) -> TargetCheck:
    """The rules on one target's text; `previous` is this target's state from the last run
    (its number is what `drop_pct` compares with)."""
    conditions = rules["conditions"]
    state: dict[str, Any] = {}
    needs_number = any(c["kind"] == "number" for c in conditions)
    number = first_number(text) if needs_number else None
    if needs_number:
        state["number"] = number
    checks = []
    folded = text.casefold()
    for condition in conditions:
        op, value = condition["op"], condition["value"]
        name = _describe(condition)
        if condition["kind"] == "text":
            if op == "matches":
                ok = found(value, text)
            else:
                ok = (str(value).casefold() in folded) == (op == "contains")
            state[name] = ok
        elif number is None:
            ok = False
            name += " (no number found)"
        elif op == "drop_pct":
            before = (previous or {}).get("number")
            ok = (
                isinstance(before, int | float)
                and before > 0
                and ((before - number) / before * 100 >= value)
            )
            if isinstance(before, int | float):
                name += f" (was {before:g}, now {number:g})"
        else:
            ok = _COMPARE[op](number, float(value))
            name += f" (it is {number:g})"
        checks.append(ConditionCheck(dict(condition), ok, name))
    results = [c.held for c in checks]
    met = all(results) if rules.get("match", "all") == "all" else any(results)
    return TargetCheck(met, state, checks)
