"""Mutant: an outbox relay run as a lifecycle process (``start`` / ``stop``) takes a full batch
for "drained" and waits a poll interval after it, so a backlog of N batches costs N poll
intervals.

Loaded with ``-p tests.mutants.relay_step_pauses_after_a_full_batch``; the outbox suite must
report a pause with full batches pending.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    OutboxRelay,
    "_step",
    "return published >= self.config.batch_size",
    "return published > self.config.batch_size  # the bug: a full batch reads as drained",
)
