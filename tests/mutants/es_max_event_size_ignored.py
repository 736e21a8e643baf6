"""Mutant: the store ignores its config's ``max_event_size`` and stores event data of any size.

Loaded with ``-p tests.mutants.es_max_event_size_ignored``; the event-sourcing suite must report
event data larger than ``max_event_size`` that was stored.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing.store import EventStore
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    EventStore,
    "_staged",
    "        data = dict(checked_data(event, self.config.max_event_size))",
    "        data = dict(checked_data(event, None))  # the bug: the configured limit is not passed",
)
