"""Mutant: an outbox relay stopped through its lifecycle (``start`` / ``stop``) finishes
without giving its lease back, so another relay must wait out the TTL (only a restart under
the same id takes the lease back at once).

Loaded with ``-p tests.mutants.relay_stop_skips_release``; the outbox suite must report the
lease kept after a graceful stop.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay
from tests.mutants._rewrite import rewrite_line

rewrite_line(OutboxRelay, "_finish", "await self.release()", "pass  # the bug: the lease is kept")
