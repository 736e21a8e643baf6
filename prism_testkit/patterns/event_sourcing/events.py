"""Events as callers write them (:class:`NewEvent`) and as the store returns them
(:class:`RecordedEvent`), and their one wire format (JSON)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptStream, InvalidEvent

JsonObject = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``schema`` is its data's schema version; ``None`` means the current
    one known to the store's upcasters. ``event_id`` (default: a fresh UUID) makes a retried
    append idempotent: give the same ids when retrying after an unknown outcome."""

    type: str
    data: JsonObject = field(default_factory=dict)
    schema: int | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: ``position`` is 1, 2, 3... within its stream (the stream's version
    after it), ``recorded_at`` the store clock at commit time, never decreasing within a stream."""

    event_id: str
    stream: str
    position: int
    type: str
    schema: int
    data: JsonObject
    recorded_at: float

    def encode(self) -> bytes:
        body = {
            "id": self.event_id,
            "stream": self.stream,
            "position": self.position,
            "type": self.type,
            "schema": self.schema,
            "data": self.data,
            "at": self.recorded_at,
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()

    @classmethod
    def decode(cls, raw: bytes) -> RecordedEvent:
        try:
            body = json.loads(raw)
            return cls(
                event_id=str(body["id"]),
                stream=str(body["stream"]),
                position=int(body["position"]),
                type=str(body["type"]),
                schema=int(body["schema"]),
                data=dict(body["data"]),
                recorded_at=float(body["at"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptStream(f"an event record cannot be decoded: {type(exc).__name__}: {exc}") from None


def checked_data(event: NewEvent, max_size: int | None) -> JsonObject:
    """The event's data as a plain JSON object (a deep copy), or :class:`InvalidEvent`."""
    if not isinstance(event, NewEvent):
        raise InvalidEvent(f"expected a NewEvent, got {type(event).__name__}")
    if not isinstance(event.type, str) or not event.type:
        raise InvalidEvent(f"event type must be a non-empty string, got {event.type!r}")
    if not isinstance(event.data, Mapping):
        raise InvalidEvent(f"event {event.type!r}: data must be a mapping, got {type(event.data).__name__}")
    if event.event_id is not None and (not isinstance(event.event_id, str) or not event.event_id):
        raise InvalidEvent(f"event {event.type!r}: event_id must be a non-empty string, got {event.event_id!r}")
    if not all(isinstance(key, str) for key in event.data):
        # JSON would turn them into strings: the event read back would differ from the one given.
        raise InvalidEvent(f"event {event.type!r}: data keys must be strings")
    try:
        raw = json.dumps(event.data, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"event {event.type!r}: data is not JSON: {exc}") from None
    if max_size is not None and len(raw) > max_size:
        raise InvalidEvent(f"event {event.type!r}: data of {len(raw)} bytes exceeds the maximum of {max_size}")
    data: dict[str, Any] = json.loads(raw)  # a copy the caller cannot mutate afterwards
    return data


def checked_time(value: float) -> float:
    if not math.isfinite(value):
        raise InvalidEvent(f"the store clock returned {value!r}, not a finite time")
    return value
