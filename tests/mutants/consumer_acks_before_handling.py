"""Mutant: the queue consumer acks a message as soon as it is received, before the handler ran,
so a consumer killed while handling it loses the message (the queue will not redeliver it).

Loaded with ``-p tests.mutants.consumer_acks_before_handling``.
"""

from __future__ import annotations

from prism_testkit.interfaces import Queue
from prism_testkit.patterns.consumer import Consumer


async def _poll_queue_acking_first(self: Consumer) -> int:
    queue = self.source
    assert isinstance(queue, Queue)
    delivery = await queue.receive(
        self.config.source, wait=self.config.poll_wait, visibility_timeout=self.config.visibility_timeout
    )
    if delivery is None:
        return 0
    self.metrics.received += 1
    await queue.ack(self.config.source, delivery)  # the bug: acked before it was handled
    if await self._is_processed(delivery.message):
        self.metrics.duplicates_skipped += 1
    elif await self._handle(delivery.message):
        await self._mark_processed(delivery.message)
    return 1


Consumer._poll_queue = _poll_queue_acking_first  # type: ignore[method-assign]
