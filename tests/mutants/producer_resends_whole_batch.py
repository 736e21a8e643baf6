"""Mutant: a send failing in the middle of a batch makes the producer send the whole batch again,
so the messages the sink already accepted arrive twice (with their ids, but duplicates all the
same) and every retry drags its batch with it.

Loaded with ``-p tests.mutants.producer_resends_whole_batch``.
"""

from __future__ import annotations

from typing import Any

from prism_testkit.patterns.producer import Producer, PublishFailed


async def _publish_batch_at_once(self: Producer, batch: Any) -> None:
    try:
        await self._attempts(batch)  # the bug: the batch is retried as one unit
    except PublishFailed as exc:
        for item in batch:
            self._fail(item, PublishFailed(item.message_id, item.attempts, str(exc)))
        return
    for item in batch:
        await self._published(item)
    self.metrics.batches_published += 1


Producer._publish_batch = _publish_batch_at_once  # type: ignore[method-assign]
