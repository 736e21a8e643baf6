"""Mutant: an append that conflicts is taken for a retry of an earlier attempt when the events
found after its expected version match the *beginning* of its event ids, without checking that
all of them are there, so a retry of [x, y] over a stream holding only x (or nothing) reports
success with y never written.

Loaded with ``-p tests.mutants.es_retry_accepts_a_prefix``; the event-sourcing suite must report
an append taken for a retry though the stream does not hold all its events.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing.store import EventStore
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    EventStore,
    "_already_appended",
    "    if [event.event_id for event in found] != ids:",
    "    if [event.event_id for event in found] != ids[: len(found)]:  # the bug: a prefix passes",
)
