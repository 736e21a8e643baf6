"""Mutant: when the sink refuses a publish, the outbox relay still counts that event as done and
commits past it, so a refused event is never retried (the batch "moves on").

Loaded with ``-p tests.mutants.relay_skips_refused_event``.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.errors import OutboxError
from prism_testkit.patterns.outbox.relay import OutboxRelay


async def _run_once_skipping(self: OutboxRelay) -> int:
    batch = await self._next_batch()
    if batch is None:
        return 0
    epoch, start, records = batch
    done = start
    try:
        for record in records:
            if record.offset != done:
                raise OutboxError(f"outbox log {self.config.log!r} skipped from offset {done} to {record.offset}")
            if self._lease_running_out():
                self.metrics.batches_cut_short += 1
                break
            done = record.offset + 1  # the bug: done before the sink accepted it
            try:
                await self.sink.publish(record.message)
            except Exception:
                self.metrics.publish_failures += 1
                raise
            self.metrics.events_relayed += 1
    finally:
        if done > start:
            self.metrics.batches += 1
            await self._commit(done, epoch)
    if done > start and self.config.cleanup == "delete":
        await self._cleanup(done)
    return done - start


OutboxRelay.run_once = _run_once_skipping  # type: ignore[method-assign]
