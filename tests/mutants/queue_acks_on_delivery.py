"""Mutant: memstore's queue acknowledges a message as it hands it out, before the consumer has
processed it; the consumer's own ack or nack then finds nothing left to settle.

Loaded with ``-p tests.mutants.queue_acks_on_delivery``; the stateful queue suite must report
the messages of crashed or nacking consumers as lost.
"""

from __future__ import annotations

from prism_testkit.backends.memstore import _MemQueue
from prism_testkit.interfaces import QueueDelivery

_receive = _MemQueue.receive
_ack = _MemQueue.ack


async def _receive_and_ack(
    self: _MemQueue, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0
) -> QueueDelivery | None:
    delivery = await _receive(self, queue, wait=wait, visibility_timeout=visibility_timeout)
    if delivery is not None:
        await _ack(self, queue, delivery)
    return delivery


async def _already_settled(self: _MemQueue, queue: str, delivery: QueueDelivery) -> None:
    return None


_MemQueue.receive = _receive_and_ack  # type: ignore[method-assign]
_MemQueue.ack = _already_settled  # type: ignore[method-assign]
_MemQueue.nack = _already_settled  # type: ignore[method-assign]
