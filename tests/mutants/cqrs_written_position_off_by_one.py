"""Mutant: a command's ``Written.position`` is the offset of its last event instead of the
notification log's end after it (one short), so a read-your-writes wait returns as soon as the
read model is one event behind the write: a query ``after=`` the write reads the state before it.

Loaded with ``-p tests.mutants.cqrs_written_position_off_by_one``; the CQRS suite must report a
query after a write that did not wait for it.
"""

from __future__ import annotations

from prism_testkit.patterns.cqrs import Cqrs
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    Cqrs,
    "execute",
    "    position = await self.write.store.notifications_end()",
    "    position = await self.write.store.notifications_end() - 1  # the bug: the last event's offset",
)
