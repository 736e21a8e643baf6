"""Mutant: the outbox relay's second renewal path (its lease in memory is older than the
stored one, after a renewal whose answer was lost, and the stored one still names it) writes
the renewal with a plain put after reading the lease, so a successor that took the lease over
between that read and the write loses it to the renewal: both relays then hold it.

Loaded with ``-p tests.mutants.relay_retried_renewal_by_put``; the outbox suite must report
the successor's lease replaced.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    OutboxRelay,
    "_acquire_or_renew",
    "if await self.kv.compare_and_set(key, raw, renewed.encode()):",
    "if await self.kv.put(key, renewed.encode()) or True:  # the bug: written blind after the read",
)
