"""Mutant: the outbox relay commits the end of the batch it read, not the offset after the last
record it published, so a batch cut short (its lease running out, the sink failing, a stop)
marks its unpublished tail as published: those events are lost.

Loaded with ``-p tests.mutants.relay_commits_batch_end``.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay
from tests.mutants._rewrite import rewrite_line

rewrite_line(OutboxRelay, "run_once", "await self._commit(done, epoch)", "await self._commit(end, epoch)")
