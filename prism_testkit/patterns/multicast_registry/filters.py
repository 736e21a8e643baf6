"""Filters over metadata: a field's value or operators, all of which must hold."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidFilter
from .validation import _FIELD, Scalar, _check_scalar, _equal, _kind

# --- filters -------------------------------------------------------------------------------

OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "nin", "exists", "prefix")
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    operand: Any

    def holds(self, metadata: Mapping[str, Scalar]) -> bool:
        present = self.field in metadata
        value = metadata.get(self.field)
        op, operand = self.op, self.operand
        if op == "exists":
            return present is operand
        if op == "ne":
            return not present or not _equal(value, operand)  # type: ignore[arg-type]
        if op == "nin":
            return not present or not any(_equal(value, o) for o in operand)  # type: ignore[arg-type]
        if not present:
            return False
        assert value is not None
        if op == "eq":
            return _equal(value, operand)
        if op == "in":
            return any(_equal(value, o) for o in operand)
        if op == "prefix":
            return isinstance(value, str) and value.startswith(operand)
        return _kind(value) == _kind(operand) and _ORDER[op](value, operand)


@dataclass(frozen=True)
class Filter:
    """Conditions on metadata, all of which must hold (an empty filter matches everyone)."""

    conditions: tuple[Condition, ...] = ()

    @classmethod
    def parse(cls, spec: Filter | Mapping[str, Any] | None) -> Filter:
        if spec is None:
            return cls()
        if isinstance(spec, Filter):
            return spec
        if not isinstance(spec, Mapping):
            raise InvalidFilter(
                "(root)", f"expected a mapping of field -> value or operators, got {type(spec).__name__}"
            )
        conditions: list[Condition] = []
        for name, rule in spec.items():
            if not isinstance(name, str) or not _FIELD.match(name):
                raise InvalidFilter(repr(name), "not a metadata field name")
            if isinstance(rule, Mapping):
                if not rule:
                    raise InvalidFilter(name, "an empty operator mapping")
                for op, operand in rule.items():
                    conditions.append(cls._condition(name, op, operand))
            else:
                conditions.append(cls._condition(name, "eq", rule))
        return cls(tuple(conditions))

    @staticmethod
    def _condition(name: str, op: object, operand: object) -> Condition:
        path = f"{name}.{op}"
        if op not in OPERATORS:
            raise InvalidFilter(path, f"unknown operator {op!r} (expected one of: {', '.join(OPERATORS)})")
        if op == "exists":
            if not isinstance(operand, bool):
                raise InvalidFilter(path, f"expected true or false, got {operand!r}")
            return Condition(name, op, operand)
        if op in ("in", "nin"):
            if isinstance(operand, str | bytes) or not isinstance(operand, Sequence | set | frozenset):
                raise InvalidFilter(path, f"expected a list of values, got {type(operand).__name__}")
            values = tuple(_check_scalar(f"{path}[{i}]", v, InvalidFilter) for i, v in enumerate(operand))
            return Condition(name, op, values)
        value = _check_scalar(path, operand, InvalidFilter)
        if op == "prefix" and not isinstance(value, str):
            raise InvalidFilter(path, f"expected a string, got {type(value).__name__}")
        if op in _ORDER and isinstance(value, bool):
            raise InvalidFilter(path, "booleans have no order: expected a number or a string")
        return Condition(name, str(op), value)

    def matches(self, metadata: Mapping[str, Scalar]) -> bool:
        return all(c.holds(metadata) for c in self.conditions)
