"""Mutant: an append stamps its events with the store clock as is, without clamping it to the
stream's last event, so a clock that steps back makes ``recorded_at`` decrease within a stream
and "events up to time t" is no longer a prefix (time travel skips or mixes events).

Loaded with ``-p tests.mutants.es_clock_not_clamped``; the event-sourcing suite must report
decreasing timestamps or a wrong state as of an instant.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing import store as store_module
from prism_testkit.patterns.event_sourcing.store import EventStore, Head

_write = EventStore._write


class _HeadWithoutTime(Head):
    """Heads decoded without their time: the max() in _write no longer clamps."""

    @classmethod
    def decode(cls, raw: bytes | None) -> Head:
        head = Head.decode(raw)
        return Head(head.version, float("-inf"))


async def _unclamped_write(self: EventStore, *args: object) -> object:
    store_module.Head = _HeadWithoutTime  # type: ignore[misc]
    try:
        return await _write(self, *args)  # type: ignore[arg-type]
    finally:
        store_module.Head = Head  # type: ignore[misc]


EventStore._write = _unclamped_write  # type: ignore[assignment, method-assign]
