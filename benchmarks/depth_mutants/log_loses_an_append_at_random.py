"""A loss at a random step: memstore's log acknowledges about one append in eight with the
offset it would have had and keeps nothing of it; which one is decided by the record's bytes,
so the search's seed decides it."""

from __future__ import annotations

import zlib

from prism_testkit.backends.memstore import _MemLog
from prism_testkit.interfaces import Message

SUITE, BACKENDS, EVIDENCE = "stateful_log", "memstore", "*INVALID (*"
ONE_IN = 8
_append = _MemLog.append


async def _loses_some(self: _MemLog, log: str, message: Message) -> int:
    if zlib.crc32(message.payload) % ONE_IN == 0:
        return await self.end_offset(log)
    return await _append(self, log, message)


_MemLog.append = _loses_some  # type: ignore[method-assign]
