"""Mutant: a stopping outbox relay forgets the last record of the batch in hand (it cuts the
batch short before it, as if its lease were running out), yet reports a clean drain.

Loaded with ``-p tests.mutants.relay_drain_leaves_last_record``.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay

_running_out = OutboxRelay._lease_running_out


def _lease_running_out(self: OutboxRelay) -> bool:
    batch = self._batch
    if self.stop_requested.is_set() and batch is not None and self.metrics.events_relayed % 4 == 3:
        return True  # the bug: the last record of a batch of four is left behind by the drain
    return _running_out(self)


OutboxRelay._lease_running_out = _lease_running_out  # type: ignore[method-assign]
