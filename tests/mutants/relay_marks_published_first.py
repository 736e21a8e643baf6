"""Mutant: the outbox relay moves its offset past a batch (marks it published) before it
publishes the batch, so a relay that dies mid-batch never publishes the rest.

Loaded with ``-p tests.mutants.relay_marks_published_first``; the stateful outbox suite must
report the unpublished events as lost.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay


async def _mark_then_publish(self: OutboxRelay) -> int:
    batch = await self._next_batch()
    if batch is None:
        return 0
    epoch, _, records = batch
    if records:
        await self._commit(records[-1].offset + 1, epoch)  # the bug: "published" before publishing
    for record in records:
        await self.sink.publish(record.message)
    return len(records)


OutboxRelay.run_once = _mark_then_publish  # type: ignore[method-assign]
