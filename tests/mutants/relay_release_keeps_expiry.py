"""Mutant: the outbox relay's release (run at the end of a graceful stop, through ``run``'s
loop or the lifecycle's ``stop``) writes its lease back unexpired: the relay forgets it holds
the lease, but another relay must wait out the whole TTL before it may publish.

Loaded with ``-p tests.mutants.relay_release_keeps_expiry``; the outbox suite must report the
lease kept after a graceful stop.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    OutboxRelay,
    "release",
    "expired = _Lease(lease.holder, lease.epoch, 0.0)",
    "expired = _Lease(lease.holder, lease.epoch, lease.expires_at)  # the bug: given back unexpired",
)
