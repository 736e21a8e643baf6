"""Mutant: memstore's log acknowledges every append with a fresh offset but keeps nothing, like
a producer that counts a send as done once it left (Kafka's ``acks=0``).

Loaded with ``-p tests.mutants.log_acks_without_storing``; the stateful log suite must report
the appends as ``lost-write``: its final drain read the log from offset 0 and found nothing,
which is looking (issue #27: an empty ok drain used to leave them merely ``unseen``).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator

from prism_testkit.backends.memstore import _MemLog
from prism_testkit.interfaces import Message

_next_offset: defaultdict[str, Iterator[int]] = defaultdict(itertools.count)


async def _acknowledge_only(self: _MemLog, log: str, message: Message) -> int:
    return next(_next_offset[log])


_MemLog.append = _acknowledge_only  # type: ignore[method-assign]
