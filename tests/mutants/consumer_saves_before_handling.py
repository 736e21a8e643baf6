"""Mutant: the log consumer saves its position past a record before the handler ran, so a
consumer killed while handling leaves a position its successor resumes from: the record is
skipped (a loss under at-least-once).

Loaded with ``-p tests.mutants.consumer_saves_before_handling``.
"""

from __future__ import annotations

from prism_testkit.interfaces import Log
from prism_testkit.patterns.consumer import Consumer


async def _poll_log_saving_first(self: Consumer) -> int:
    source = self.source
    assert isinstance(source, Log)
    assert self._position is not None
    records = await source.read(self.config.source, self._position, limit=self.config.batch_size, wait=0.05)
    for record in records:
        self.metrics.received += 1
        self._position = record.offset + 1
        await self._save_position()  # the bug: saved before the handler ran
        if not await self._handle(record.message):
            break
        if self.stop_requested.is_set():
            break
    return len(records)


Consumer._poll_log = _poll_log_saving_first  # type: ignore[method-assign]
