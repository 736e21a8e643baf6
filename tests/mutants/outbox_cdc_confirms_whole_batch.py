"""Mutant: when a batch of the outbox CDC publisher ends early (the sink fails, the publisher is
cancelled), it confirms the position of the last transaction it *read* instead of the last one
the sink acknowledged in full: the rest of the batch is never published.

Loaded with ``-p tests.mutants.outbox_cdc_confirms_whole_batch``.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox_cdc import OutboxCdcPublisher
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    OutboxCdcPublisher,
    "run_once",
    "await self._confirm(done.position)",
    "await self._confirm(sets[-1].position)",
)
