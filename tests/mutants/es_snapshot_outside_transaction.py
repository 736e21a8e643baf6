"""Mutant: an append writes the aggregate's snapshot straight to the key-value store while its
transaction is still open, not in it, so an append that then loses the race (its commit
aborts: a version conflict) leaves its snapshot behind: a state the stream never reached.

Loaded with ``-p tests.mutants.es_snapshot_outside_transaction``; the event-sourcing suite must
report a losing append's snapshot that is kept.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing.store import EventStore
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    EventStore,
    "_commit",
    "                await tx.put(self.config.snapshot_key(stream), snapshot)",
    "                await self.kv.put(self.config.snapshot_key(stream), snapshot)  # the bug: not in tx",
)
