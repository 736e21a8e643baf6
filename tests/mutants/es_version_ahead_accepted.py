"""Mutant: an append refuses only a stale expected version (below the stream's), so one that
expects a version the stream has not reached is written at positions past a gap.

Loaded with ``-p tests.mutants.es_version_ahead_accepted``; the event-sourcing suite must report
an append expecting a version ahead of the stream that was accepted.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing.store import EventStore
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    EventStore,
    "_write",
    "    if head.version != expected:",
    "    if head.version > expected:  # the bug: a version ahead of the stream passes",
)
