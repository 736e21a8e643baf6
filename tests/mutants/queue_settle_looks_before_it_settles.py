"""Mutant: memstore's queue ``ack`` / ``nack`` look whether the delivery is still pending, wait
for the answer (a round trip, as a driver checking its own table and then telling the server
does), and then settle it, taking a settle that found nothing as done: several concurrent
settlements of one delivery all succeed.

Loaded with ``-p tests.mutants.queue_settle_looks_before_it_settles``; the queue contract
suite's concurrent-settlement test must fail.
"""

from __future__ import annotations

import asyncio
import contextlib

from prism_testkit.backends.memstore import _MemQueue
from prism_testkit.errors import DeliveryNotFound
from prism_testkit.interfaces import QueueDelivery


async def _settle(self: _MemQueue, queue: str, delivery: QueueDelivery, *, requeue: bool) -> None:
    state = self._state(queue, delivery)
    if state.deadline_of(delivery.delivery_id) is None:
        raise DeliveryNotFound(f"delivery {delivery.delivery_id!r} is not in flight on queue {queue!r}")
    await asyncio.sleep(0)  # the bug: the answer is a look taken before the settlement
    with contextlib.suppress(DeliveryNotFound):
        state.settle(delivery.delivery_id, requeue=requeue)


async def _ack(self: _MemQueue, queue: str, delivery: QueueDelivery) -> None:
    await _settle(self, queue, delivery, requeue=False)


async def _nack(self: _MemQueue, queue: str, delivery: QueueDelivery) -> None:
    await _settle(self, queue, delivery, requeue=True)


_MemQueue.ack = _ack  # type: ignore[method-assign]
_MemQueue.nack = _nack  # type: ignore[method-assign]
