"""Mutant: the outbox's change-feed publisher confirms the feed's position (advances the slot)
before the sink acknowledged the batch, so a publisher killed mid-batch never publishes the rest.

Loaded with ``-p tests.mutants.outbox_cdc_confirms_before_publishing``; the outbox_cdc suite must
report the unpublished events as never delivered.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox_cdc import OutboxCdcPublisher


async def _confirm_then_publish(self: OutboxCdcPublisher) -> int:
    if not self._started:
        await self.start()
    sets = await self.feed.read(self.capture, limit=self.config.batch_size, wait=self.config.poll_interval)
    if not sets:
        return 0
    await self._confirm(sets[-1].position)  # the bug: confirmed before the sink acknowledged
    published = 0
    for change_set in sets:
        for message in self.records(change_set):
            await self.sink.publish(message)
            published += 1
    return published


OutboxCdcPublisher.run_once = _confirm_then_publish  # type: ignore[method-assign]
