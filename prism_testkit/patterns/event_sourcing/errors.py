"""Typed errors of the event store, aggregates and projections."""

from __future__ import annotations

from prism_testkit.errors import ConfigurationError, PrismError


class EventSourcingError(PrismError):
    """Base of every event-sourcing error."""


class VersionConflict(EventSourcingError):
    """An append expected a stream version that is not the current one. Nothing was written."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        super().__init__(f"stream {stream!r} is at version {actual}, the append expected version {expected}")


class InvalidEvent(EventSourcingError, ValueError):
    """An event (or a stream name) cannot be stored as given. Nothing was written."""


class UpcastError(EventSourcingError):
    """A stored event's schema version cannot be brought to the current one (a missing or
    failing upcaster)."""


class CorruptStream(EventSourcingError):
    """Stored events contradict the store's invariants (a gap, or a record under the wrong
    stream or position): someone wrote to the store's keys behind its back."""


class UnknownVersion(EventSourcingError, LookupError):
    """Time travel asked for a version the stream has not reached."""

    def __init__(self, stream: str, wanted: int, current: int) -> None:
        self.stream = stream
        self.wanted = wanted
        self.current = current
        super().__init__(f"stream {stream!r} is at version {current}; version {wanted} does not exist yet")


class ProjectionConflict(EventSourcingError):
    """Another runner of the same projection moved its tracking position meanwhile; this batch
    was not applied."""


class ProjectionTimeout(EventSourcingError, TimeoutError):
    """A wait for a projection to reach a notification position ran out."""


class EventSourcingConfigurationError(EventSourcingError, ConfigurationError):
    """The event store or a projection was set up with values that cannot work."""
