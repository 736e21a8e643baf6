"""The consumer side: dropping the duplicates at-least-once relaying delivers."""

from __future__ import annotations

from collections import OrderedDict

from prism_testkit.interfaces import Message

from .codec import HEADER_EVENT_ID


class Deduplicator:
    """Drops redelivered outbox events by event id, remembering the last ``capacity`` ids.

    Memory is bounded: an id is forgotten after ``capacity`` newer ones. A duplicate arriving
    later than that passes through, so size it above the largest redelivery window (a relay
    republishes at most ``batch_size`` records after a crash; add what your sink redelivers).
    For duplicates that must never pass, key an idempotent write on the event id instead.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.duplicates = 0
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def first_time(self, event: Message | str) -> bool:
        """True (and remembered) the first time an event id is seen; False for a duplicate.
        A message without an event id header is never treated as a duplicate."""
        event_id = event.headers.get(HEADER_EVENT_ID) if isinstance(event, Message) else event
        if event_id is None:
            return True
        if event_id in self._seen:
            self._seen.move_to_end(event_id)
            self.duplicates += 1
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True
