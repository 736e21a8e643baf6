"""A loss after the Nth acknowledgement: memstore's log acknowledges the third append to each
log with the offset it would have had, and keeps nothing of it (the next append takes that
offset). A history of fewer than three appends to one log cannot see it."""

from __future__ import annotations

from collections import Counter

from prism_testkit.backends.memstore import _MemLog
from prism_testkit.interfaces import Message

SUITE, BACKENDS, EVIDENCE = "stateful_log", "memstore", "*INVALID (*"
NTH = 3
_append = _MemLog.append
_appended: Counter[str] = Counter()


async def _loses_the_nth(self: _MemLog, log: str, message: Message) -> int:
    _appended[log] += 1
    if _appended[log] == NTH:
        return await self.end_offset(log)
    return await _append(self, log, message)


_MemLog.append = _loses_the_nth  # type: ignore[method-assign]
