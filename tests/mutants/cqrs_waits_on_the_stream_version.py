"""Mutant: a read-your-writes wait waits for the command's stream version instead of its
notification position. With one stream the two are the same number; with two streams written
interleaved the version is lower, so the wait returns while the read model is short of the write.

Loaded with ``-p tests.mutants.cqrs_waits_on_the_stream_version``; the CQRS suite must report a
query after a write that did not wait for it.
"""

from __future__ import annotations

from prism_testkit.patterns.cqrs import Cqrs
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    Cqrs,
    "wait",
    "wanted = after.position if isinstance(after, Written) else after",
    "wanted = after.version if isinstance(after, Written) else after  # the bug: the stream's version",
)
