"""Mutant: reading a stream in pages of concurrent gets, each page stops one short of the
next page's start, so the last event of every full page (positions 32, 64...) is never read.

Loaded with ``-p tests.mutants.es_read_stream_skips_page_end``; the event-sourcing suite must
report a long stream read back with events missing.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing.store import EventStore
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    EventStore,
    "read_stream",
    "        chunk = positions[start : start + _READ_CONCURRENCY]",
    "        chunk = positions[start : start + _READ_CONCURRENCY - 1]  # the bug: the page's last is skipped",
)
