"""Mutant: the claim check deletes the object before the queue has accepted the ack, so an
ack refused because the visibility timeout ran out (the message is due again) leaves the
redelivered message without its object.

Loaded with ``-p tests.mutants.claim_check_releases_before_ack``. On real time the ack almost
always lands well inside the timeout and the stateful claim check suite passes; under
``--prism-simulate --prism-buggify=ack-at-deadline`` memstore lands some acks exactly at the
deadline, and the suite reports a dangling claim.
"""

from __future__ import annotations

from prism_testkit.interfaces import QueueDelivery
from prism_testkit.patterns.claim_check import ClaimCheckQueue


async def _release_then_ack(self: ClaimCheckQueue, queue: str, delivery: QueueDelivery) -> None:
    raw, ref = self._pending.get((queue, delivery.delivery_id), (delivery, None))
    await self.claim_check._release_quietly(ref)
    await self.inner.ack(queue, raw)
    self._pending.pop((queue, delivery.delivery_id), None)


ClaimCheckQueue.ack = _release_then_ack  # type: ignore[method-assign]
