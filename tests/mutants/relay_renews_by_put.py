"""Mutant: the outbox relay renews its lease with a plain put instead of a compare-and-set
against the lease it holds, so a renewal that reaches the store after the lease ran out (a
store slower than the lease, or a successor whose clock runs ahead) replaces the successor's
lease: both relays then hold it.

Loaded with ``-p tests.mutants.relay_renews_by_put``; the outbox suite must report the
successor's lease replaced.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    OutboxRelay,
    "_acquire_or_renew",
    "if await self.kv.compare_and_set(key, mine.encode(), renewed.encode()):",
    "if await self.kv.put(key, renewed.encode()) or True:  # the bug: renewed blind",
)
