"""The promotion / demotion rule grammar: conditions like ``access_count > 10`` or
``age > 1_day AND tier == hot``, parsed by a small recursive-descent parser (never ``eval``).

Grammar (keywords are case-insensitive)::

    condition  := or
    or         := and ("OR" and)*
    and        := not ("AND" not)*
    not        := "NOT" not | "(" or ")" | comparison
    comparison := field operator value

Parentheses and NOTs nest at most :data:`MAX_NESTING` deep (a rule nested thousands of levels
deep is refused with a RuleSyntaxError, not a RecursionError).

Fields and the values they compare with:

- ``age`` (since the value was written), ``idle`` (since it was last read), ``age_in_tier``
  (since it entered its current tier): durations, ``90``, ``100ms``, ``12h``, ``1d``, ``1_day``,
  ``30_days``;
- ``access_count``: a whole number;
- ``size``: a size, ``512``, ``10KB``, ``8MiB``;
- ``tier``: a tier name (``hot``, ``warm``, ``cold``), with ``==`` or ``!=`` only.

A malformed condition raises :class:`RuleSyntaxError` naming the position and what was
expected, so a namespace file fails at load time, never when the migrator first runs.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from prism_testkit.config.units import parse_duration, parse_size
from prism_testkit.errors import ConfigurationError

TIERS: tuple[str, ...] = ("hot", "warm", "cold")  # fastest first
DURATION_FIELDS = frozenset({"age", "idle", "age_in_tier"})
FIELDS: tuple[str, ...] = ("age", "idle", "age_in_tier", "access_count", "size", "tier")
Value = float | int | str
Facts = Mapping[str, Value]

_OPERATORS: dict[str, Callable[[Value, Value], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_TOKEN = re.compile(
    r"\s*(?:(?P<op>>=|<=|==|!=|>|<)|(?P<paren>[()])|(?P<number>\d[\d_.]*(?:[a-zA-Z][a-zA-Z_]*)?)"
    r"|(?P<word>[A-Za-z_][A-Za-z_0-9]*)|(?P<bad>\S))"
)


class RuleSyntaxError(ConfigurationError, ValueError):
    """A rule condition that does not parse or does not type-check. A ``ValueError`` too, so
    pydantic reports it at the condition's path inside a namespace file."""

    def __init__(self, text: str, position: int, expected: str, found: str) -> None:
        self.text, self.position, self.expected, self.found = text, position, expected, found
        shown = found if len(found) <= EXCERPT else found[:EXCERPT] + "..."
        super().__init__(
            f"rule {_excerpt(text, position)} at column {position + 1}: expected {expected}, found {shown}"
        )


EXCERPT = 60  # characters of a long rule shown around an error: the message stays one readable line


def _excerpt(text: str, position: int) -> str:
    if len(text) <= EXCERPT:
        return repr(text)
    start = max(0, min(position - EXCERPT // 2, len(text) - EXCERPT))
    before, after = ("..." if start else ""), ("..." if start + EXCERPT < len(text) else "")
    return f"{before}{text[start : start + EXCERPT]!r}{after}"


@dataclass(frozen=True)
class _Token:
    kind: Literal["op", "paren", "number", "word", "end"]
    text: str
    position: int

    def describe(self) -> str:
        return "the end of the rule" if self.kind == "end" else repr(self.text)


# --- the syntax tree ---------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    value: Value

    def evaluate(self, facts: Facts) -> bool:
        return _OPERATORS[self.op](facts[self.field], self.value)

    def tiers(self) -> set[str]:
        return {str(self.value)} if self.field == "tier" else set()

    def fields(self) -> set[str]:
        return {self.field}


@dataclass(frozen=True)
class Not:
    inner: Condition

    def evaluate(self, facts: Facts) -> bool:
        return not self.inner.evaluate(facts)

    def tiers(self) -> set[str]:
        return self.inner.tiers()

    def fields(self) -> set[str]:
        return self.inner.fields()


@dataclass(frozen=True)
class Junction:
    kind: Literal["AND", "OR"]
    parts: tuple[Condition, ...]

    def evaluate(self, facts: Facts) -> bool:
        results = (part.evaluate(facts) for part in self.parts)
        return all(results) if self.kind == "AND" else any(results)

    def tiers(self) -> set[str]:
        return set().union(*(part.tiers() for part in self.parts))

    def fields(self) -> set[str]:
        return set().union(*(part.fields() for part in self.parts))


Condition = Comparison | Not | Junction


# --- the parser --------------------------------------------------------------------------


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind is None:  # only trailing whitespace was left
            break
        token_text = match.group(kind)
        start = match.start(kind)
        if kind == "bad":
            raise RuleSyntaxError(text, start, "a field, an operator, a value or a parenthesis", repr(token_text))
        found.append(_Token(kind, token_text, start))  # type: ignore[arg-type]
    found.append(_Token("end", "", len(text)))
    return found


MAX_NESTING = 32  # parentheses and NOTs inside each other; real rules use two or three


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def fail(self, expected: str) -> RuleSyntaxError:
        return RuleSyntaxError(self.text, self.current.position, expected, self.current.describe())

    def keyword(self, word: str) -> bool:
        if self.current.kind == "word" and self.current.text.upper() == word:
            self.index += 1
            return True
        return False

    def parse(self) -> Condition:
        if self.current.kind == "end":
            raise self.fail("a condition such as 'access_count > 10'")
        condition = self.junction("OR")
        after: _Token = self.current  # a fresh read: junction() moved on (mypy keeps the earlier narrowing)
        if after.kind != "end":
            raise self.fail("AND, OR or the end of the rule")
        return condition

    def junction(self, kind: Literal["AND", "OR"]) -> Condition:
        part = self.junction("AND") if kind == "OR" else self.negation()
        parts = [part]
        while self.keyword(kind):
            parts.append(self.junction("AND") if kind == "OR" else self.negation())
        return parts[0] if len(parts) == 1 else Junction(kind, tuple(parts))

    def negation(self) -> Condition:
        token = self.current
        if (token.kind == "word" and token.text.upper() == "NOT") or (token.kind == "paren" and token.text == "("):
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise self.fail(f"at most {MAX_NESTING} nested parentheses and NOTs")
            try:
                return self._nested()
            finally:
                self.depth -= 1
        return self.comparison()

    def _nested(self) -> Condition:
        if self.keyword("NOT"):
            return Not(self.negation())
        self.index += 1  # the "("
        inner = self.junction("OR")
        if not (self.current.kind == "paren" and self.current.text == ")"):
            raise self.fail("')'")
        self.index += 1
        return inner

    def comparison(self) -> Comparison:
        token = self.current
        if token.kind != "word" or token.text.lower() not in FIELDS:
            raise self.fail(f"a field ({', '.join(FIELDS)})")
        field = token.text.lower()
        self.index += 1
        op_token = self.current
        if op_token.kind != "op":
            raise self.fail(f"an operator ({' '.join(_OPERATORS)})")
        self.index += 1
        if field == "tier" and op_token.text not in ("==", "!="):
            raise RuleSyntaxError(
                self.text, op_token.position, "== or != (tiers are not ordered numbers)", op_token.text
            )
        value = self.value(field)
        self.index += 1
        return Comparison(field, op_token.text, value)

    def value(self, field: str) -> Value:
        token = self.current
        if field == "tier":
            if token.kind != "word" or token.text.lower() not in TIERS:
                raise self.fail(f"a tier ({', '.join(TIERS)})")
            return token.text.lower()
        if token.kind != "number":
            raise self.fail(f"a {_kind_of(field)} after {field}")
        number, unit = re.fullmatch(r"([\d_.]+)(.*)", token.text).groups()  # type: ignore[union-attr]
        text = number.replace("_", "") + unit.strip("_")
        try:
            if field in DURATION_FIELDS:
                seconds = parse_duration(text)
                assert isinstance(seconds, float)
                return seconds
            if field == "size":
                size = parse_size(text)
                assert isinstance(size, int)
                return size
            if not text.isdigit():
                raise ValueError(text)
            return int(text)
        except ValueError:
            raise self.fail(f"a {_kind_of(field)} after {field}") from None


def _kind_of(field: str) -> str:
    if field in DURATION_FIELDS:
        return "duration (e.g. 90, 12h, 1d, 30_days)"
    if field == "size":
        return "size (e.g. 512, 10KB, 8MiB)"
    return "whole number"


def parse_condition(text: str) -> Condition:
    """The syntax tree of ``text``; :class:`RuleSyntaxError` when it is not a valid condition."""
    return _Parser(text).parse()


# --- actions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """``promote_to_<tier>`` (to a faster tier) or ``demote_to_<tier>`` (to a slower one)."""

    direction: Literal["promote", "demote"]
    target: str

    @classmethod
    def parse(cls, text: str) -> Action:
        match = re.fullmatch(r"(promote|demote)_to_([a-z]+)", text.strip().lower())
        if not match or match.group(2) not in TIERS:
            raise ConfigurationError(
                f"action {text!r}: expected promote_to_<tier> or demote_to_<tier> with a tier among {', '.join(TIERS)}"
            )
        direction, target = match.group(1), match.group(2)
        if direction == "promote" and target == TIERS[-1]:
            raise ConfigurationError(f"action {text!r}: {target} is the slowest tier; nothing is promoted to it")
        if direction == "demote" and target == TIERS[0]:
            raise ConfigurationError(f"action {text!r}: {target} is the fastest tier; nothing is demoted to it")
        return cls(direction, target)  # type: ignore[arg-type]

    def applies_to(self, tier: str) -> bool:
        """Whether the move goes the way its name says from ``tier``."""
        here, there = TIERS.index(tier), TIERS.index(self.target)
        return there < here if self.direction == "promote" else there > here

    def __str__(self) -> str:
        return f"{self.direction}_to_{self.target}"


@dataclass(frozen=True)
class Rule:
    condition: Condition
    action: Action
    text: str

    def target_for(self, facts: Facts) -> str | None:
        """The tier this rule moves a key with ``facts`` to, or None."""
        tier = str(facts["tier"])
        if self.action.applies_to(tier) and self.condition.evaluate(facts):
            return self.action.target
        return None
