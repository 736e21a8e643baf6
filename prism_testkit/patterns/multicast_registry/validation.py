"""What an identity and its metadata may be: the checks every write passes, and comparison of
metadata values within a kind."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping

from .errors import InvalidIdentity, InvalidMetadata

Scalar = str | int | float | bool

_IDENTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_MAX_FIELDS = 64
_MAX_STRING = 1024
_MAX_INT = 2**53  # integers beyond this do not survive a JSON reader that uses doubles


# --- validation ----------------------------------------------------------------------------


def check_identity(identity: object) -> str:
    if not isinstance(identity, str):
        raise InvalidIdentity(identity, f"expected a str, got {type(identity).__name__}")
    if not _IDENTITY.match(identity):
        raise InvalidIdentity(
            identity, "expected 1-128 characters of letters, digits and _ . @ : -, starting with a letter or digit"
        )
    return identity


def _check_scalar(path: str, value: object, error: Callable[[str, str], Exception]) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise error(path, f"integer {value} is beyond +-2**53")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise error(path, f"{value} is not a finite number")
        return value
    if isinstance(value, str):
        if len(value) > _MAX_STRING:
            raise error(path, f"string of {len(value)} characters (at most {_MAX_STRING})")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise error(path, "string that is not valid unicode (a lone surrogate)") from None
        return value
    raise error(path, f"expected a str, int, float or bool, got {type(value).__name__}")


def check_metadata(metadata: object, limit: int) -> dict[str, Scalar]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadata("(root)", f"expected a mapping, got {type(metadata).__name__}")
    if len(metadata) > _MAX_FIELDS:
        raise InvalidMetadata("(root)", f"{len(metadata)} fields (at most {_MAX_FIELDS})")
    out: dict[str, Scalar] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not _FIELD.match(name):
            raise InvalidMetadata(repr(name), "field names are 1-64 of letters, digits, _ . -, not starting with one")
        out[name] = _check_scalar(name, value, InvalidMetadata)
    size = len(json.dumps(out, separators=(",", ":")).encode())
    if size > limit:
        raise InvalidMetadata("(root)", f"{size} bytes as JSON (at most {limit})")
    return out


def _kind(value: Scalar) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "str"


def _equal(a: Scalar, b: Scalar) -> bool:
    return _kind(a) == _kind(b) and a == b
