"""Mutant: an outbox relay running its own loop (``run``) takes a full batch for "drained" and
waits a poll interval after it, so a backlog of N batches costs N poll intervals: nothing is
lost, the outbox only drains slower than it needs to.

Loaded with ``-p tests.mutants.relay_pauses_after_a_full_batch``; the outbox suite must report a
pause with full batches pending.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    OutboxRelay,
    "run",
    "return await self.run_once() >= self.config.batch_size  # less: drained, wait before polling",
    "return await self.run_once() > self.config.batch_size  # the bug: a full batch reads as drained",
)
