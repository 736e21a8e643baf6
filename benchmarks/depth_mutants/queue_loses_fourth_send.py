"""A loss after the Nth acknowledgement: memstore's queue acknowledges the fourth message sent
to each queue and keeps nothing of it. A history of fewer than four sends to one queue cannot
see it."""

from __future__ import annotations

from collections import Counter

from prism_testkit.backends.memstore import _MemQueue
from prism_testkit.interfaces import Message

SUITE, BACKENDS, EVIDENCE = "stateful_queue", "memstore", "*INVALID (*lost*"
NTH = 4
_send = _MemQueue.send
_sent: Counter[str] = Counter()


async def _loses_the_nth(self: _MemQueue, queue: str, message: Message) -> str:
    _sent[queue] += 1
    if _sent[queue] == NTH:
        return f"lost-{queue}-{NTH}"
    return await _send(self, queue, message)


_MemQueue.send = _loses_the_nth  # type: ignore[method-assign]
