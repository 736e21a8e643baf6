"""A loss at a random step: memstore's queue acknowledges about one send in eight and keeps
nothing of it; which one is decided by the message's bytes, so the search's seed decides it
(a rerun of one example loses the same sends)."""

from __future__ import annotations

import zlib

from prism_testkit.backends.memstore import _MemQueue
from prism_testkit.interfaces import Message

SUITE, BACKENDS, EVIDENCE = "stateful_queue", "memstore", "*INVALID (*lost*"
ONE_IN = 8
_send = _MemQueue.send


async def _loses_some(self: _MemQueue, queue: str, message: Message) -> str:
    if zlib.crc32(message.payload) % ONE_IN == 0:
        return f"lost-{zlib.crc32(message.payload)}"
    return await _send(self, queue, message)


_MemQueue.send = _loses_some  # type: ignore[method-assign]
