"""Sizes and durations as people write them in configuration: ``1MB``, ``8MiB``, ``100ms``,
``30days``, ``infinite``. One parser each, shared by namespace files and every pattern's own
config model, so a value that validates in a file means the same thing in code."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

SIZE_PATTERN = r"^\s*\d+\s*([kmgtKMGT]([iI]?[bB])?|[bB])?\s*$"
DURATION_PATTERN = (
    r"^\s*(infinite|forever|\d+(\.\d+)?\s*(ms|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?|w|weeks?)?)\s*$"
)

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt](?:ib|b)?|b)?\s*$", re.IGNORECASE)
_DECIMAL = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_DURATION = re.compile(DURATION_PATTERN, re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_UNITS = tuple(_SECONDS)  # the short form of each unit a duration may carry


def parse_size(value: object) -> object:
    """``"1MB"`` -> 1_000_000, ``"64KiB"`` -> 65_536; other values pass through to the field's
    own type check. Decimal units (KB, MB) are powers of 1000, binary ones (KiB, MiB) of 1024,
    as in RFC-009's namespace files (``threshold: 1MB``)."""
    if not isinstance(value, str):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"not a size: {value!r} (use bytes, or e.g. 512KB, 1MB, 8MiB)")
    number, unit = int(match.group(1)), (match.group(2) or "").lower()
    if unit.endswith("ib"):
        return number * 1024 ** ("kmgt".index(unit[0]) + 1)
    return number * _DECIMAL[unit.rstrip("b") if unit != "b" else "b"]


def parse_duration(value: object) -> object:
    """``"100ms"``, ``"30days"``, ``"30 days"``, ``"1h"`` or a number of seconds; ``"infinite"``
    is ``math.inf``. Other values pass through to the field's own type check."""
    if not isinstance(value, str):
        return value
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (use seconds, or e.g. 100ms, 60s, 1h, 30days, infinite)")
    text = match.group(1).lower()
    if text in ("infinite", "forever"):
        return math.inf
    parts = re.match(r"([\d.]+)\s*([a-z]*)", text)
    assert parts is not None  # the pattern above already matched this shape
    number, unit = parts.groups()
    scale = _SECONDS["ms"] if unit == "ms" else _SECONDS[unit[0]] if unit else 1
    return float(number) * scale


Size = Annotated[int, BeforeValidator(parse_size, json_schema_input_type=int | str)]
Duration = Annotated[float, BeforeValidator(parse_duration, json_schema_input_type=float | str)]
