"""Mutant: the claim check deletes the object as soon as the consumer has read it, before the
message is acknowledged, so a nacked or timed-out message finds no object when redelivered.

Loaded with ``-p tests.mutants.claim_check_releases_on_receive``; the stateful claim check
suite must report a dangling claim (and the message as lost).
"""

from __future__ import annotations

from prism_testkit.interfaces import QueueDelivery
from prism_testkit.patterns.claim_check import ClaimCheckQueue

_receive = ClaimCheckQueue.receive


async def _receive_and_release(
    self: ClaimCheckQueue, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0
) -> QueueDelivery | None:
    delivery = await _receive(self, queue, wait=wait, visibility_timeout=visibility_timeout)
    if delivery is not None:
        _, ref = self._pending[(queue, delivery.delivery_id)]
        if ref is not None:
            await self.claim_check.release(ref)
    return delivery


ClaimCheckQueue.receive = _receive_and_release  # type: ignore[method-assign]
