"""Mutant: the WAL applier commits its checkpoint past a batch before applying it, so an applier
that dies mid-batch leaves the rest of the batch below the checkpoint, never applied.

Loaded with ``-p tests.mutants.wal_checkpoint_before_apply``; the stateful WAL suite must report
the unapplied mutations as lost.
"""

from __future__ import annotations

from prism_testkit.patterns.wal.applier import WalApplier, _Pending


async def _checkpoint_then_apply(self: WalApplier, wait: float) -> int:
    config = self.config
    if self._position is None:
        self._position = await self.log.committed(config.log, config.group) or 0
    records = await self.log.read(config.log, self._position, limit=config.batch_size, wait=wait)
    if records:
        await self.log.commit(config.log, config.group, records[-1].offset + 1)  # the bug: before applying
    applied = 0
    for record in records:
        applied += await self._attempt(_Pending(record.offset, record))
        self._position = record.offset + 1
    return applied


WalApplier._run_once = _checkpoint_then_apply  # type: ignore[method-assign]
