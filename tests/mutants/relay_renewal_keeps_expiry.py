"""Mutant: the outbox relay's lease renewal writes the lease back with the expiry it already had
instead of a fresh ``lease_ttl`` from now, so a busy relay's lease runs out one ``lease_ttl``
after it was taken: the relay then cuts every batch short (publishing nothing) and a standby
takes the outbox over although its holder never stopped.

Loaded with ``-p tests.mutants.relay_renewal_keeps_expiry``.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    OutboxRelay,
    "_acquire_or_renew",
    "renewed = _Lease(self.relay_id, mine.epoch, self.clock() + self.config.lease_ttl)",
    "renewed = _Lease(self.relay_id, mine.epoch, mine.expires_at)",
)
