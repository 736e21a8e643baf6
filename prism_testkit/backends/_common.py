"""Argument checks shared by the backends, so that they reject bad input identically."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

from prism_testkit.interfaces import Message

BytesLike = bytes | bytearray | memoryview


def as_bytes(value: object, what: str = "value") -> bytes:
    """``value`` as immutable bytes (copying a mutable buffer so later changes cannot leak in)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


def check_positive(value: float, what: str) -> float:
    """A finite number of seconds > 0 (ttl, visibility timeout)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def check_wait(wait: float) -> float:
    """A bound on waiting for data: >= 0 (0 means 'do not wait')."""
    if isinstance(wait, bool) or not isinstance(wait, int | float):
        raise TypeError(f"wait must be a number of seconds, not {type(wait).__name__}")
    if math.isnan(wait) or wait < 0:
        raise ValueError(f"wait must be >= 0 seconds, got {wait!r}")
    return float(wait)


def check_count(value: int, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def check_offset(offset: int) -> int:
    """A log offset: an int >= 0."""
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(f"offset must be an int, not {type(offset).__name__}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    return offset


def check_name(name: str, what: str) -> str:
    """Bucket names and object keys: non-empty strings."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError(f"{what} must not be empty")
    return name


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """A private copy of object metadata, which must map str to str."""
    copy = dict(metadata or {})
    for name, value in copy.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"object metadata must map str to str, got {name!r}: {value!r}")
    return copy


def freeze_message(message: Message) -> Message:
    """A stored copy of ``message`` that neither the sender nor any receiver can change."""
    if not isinstance(message, Message):
        raise TypeError(f"expected a Message, not {type(message).__name__}")
    headers = MappingProxyType(dict(message.headers))
    return Message(as_bytes(message.payload, "payload"), headers, message.key)


# --- numbered appends (transactions.numbering) -----------------------------------------------


class Numbering:
    """The counters of one transaction's numbered appends, and the keys it read or wrote
    otherwise: a key cannot be both (which number would a read of it see?)."""

    def __init__(self) -> None:
        self.counters: set[str] = set()
        self.other_keys: set[str] = set()

    def touch(self, key: str) -> None:
        """``key`` is read or written by the transaction."""
        if key in self.counters:
            raise ValueError(f"key {key!r} numbers appends in this transaction: it cannot be read or written too")
        self.other_keys.add(key)

    def count(self, counter: str, header: str) -> None:
        check_name(counter, "counter")
        check_name(header, "header")
        if counter in self.other_keys:
            raise ValueError(f"key {counter!r} was read or written in this transaction: it cannot number appends")
        self.counters.add(counter)


def next_number(counter: str, current: bytes | None) -> int:
    """The number after the counter's ``current`` value (None: absent, so 1). Raises
    TransactionAborted when the counter holds anything but a decimal integer."""
    if current is None:
        return 1
    text = current.decode("ascii", errors="replace")
    if not text.isdecimal():
        raise bad_counter(counter)
    return int(text) + 1


def bad_counter(counter: str) -> Exception:
    from prism_testkit.errors import TransactionAborted

    return TransactionAborted(f"counter {counter!r} holds no decimal number, so nothing was committed")


def numbered(message: Message, header: str, number: int) -> Message:
    return Message(message.payload, {**message.headers, header: str(number)}, key=message.key)
