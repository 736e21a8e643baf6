"""Mutant: a new outbox relay over the same store starts from the beginning of the outbox
instead of its committed offset, so a restart after a stop publishes everything again.

Loaded with ``-p tests.mutants.relay_restart_ignores_offset``.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay

_fence = OutboxRelay._fence


async def _fence_from_zero(self: OutboxRelay, epoch: int) -> int:
    start = await _fence(self, epoch)
    return 0 if self.metrics.events_relayed == 0 else start  # the bug: a new relay starts over


OutboxRelay._fence = _fence_from_zero  # type: ignore[method-assign]
