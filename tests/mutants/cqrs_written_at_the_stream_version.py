"""Mutant: a command's ``Written.position`` is its stream's version instead of the notification
log's end after it: right while one stream is written, short of the write once two streams are
written interleaved, so a read-your-writes wait returns before the read model applied it.

Loaded with ``-p tests.mutants.cqrs_written_at_the_stream_version``; the CQRS suite must report
a query after a write that did not wait for it.
"""

from __future__ import annotations

from prism_testkit.patterns.cqrs import Cqrs
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    Cqrs,
    "execute",
    "    position = await self.write.store.notifications_end()",
    "    position = loaded.version  # the bug: the stream's version, not the notification position",
)
