"""Mutant: the store builds a stream's keys from its name with '/' replaced by '-' (a
"sanitised" key), so streams "a/1" and "a-1" share one head, one set of events and one
snapshot: an append to one is a version conflict with, or a read of, the other.

Loaded with ``-p tests.mutants.es_stream_keys_sanitised``; the event-sourcing suite must report
a stream name that is not a stream of its own.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing.config import EventSourcingConfig

_head_key = EventSourcingConfig.head_key
_event_key = EventSourcingConfig.event_key
_snapshot_key = EventSourcingConfig.snapshot_key


def _flat(stream: str) -> str:
    return stream.replace("/", "-")  # the bug: two names, one key


def _head(self: EventSourcingConfig, stream: str) -> str:
    return _head_key(self, _flat(stream))


def _event(self: EventSourcingConfig, stream: str, position: int) -> str:
    return _event_key(self, _flat(stream), position)


def _snapshot(self: EventSourcingConfig, stream: str) -> str:
    return _snapshot_key(self, _flat(stream))


EventSourcingConfig.head_key = _head  # type: ignore[method-assign]
EventSourcingConfig.event_key = _event  # type: ignore[method-assign]
EventSourcingConfig.snapshot_key = _snapshot  # type: ignore[method-assign]
