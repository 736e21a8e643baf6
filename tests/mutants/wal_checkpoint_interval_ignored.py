"""Mutant: the WAL applier ignores ``checkpoint_interval`` and commits its checkpoint after every
batch (one extra log write per batch, the option has no effect).

Loaded with ``-p tests.mutants.wal_checkpoint_interval_ignored``.
"""

from __future__ import annotations

from prism_testkit.patterns.wal.applier import WalApplier


async def _checkpoint(self: WalApplier, *, force: bool) -> None:
    resolved = self.resolved
    if resolved is None or resolved <= self._committed:
        return
    now = self.clock()  # the bug: the interval is never compared
    await self.log.commit(self.config.log, self.config.group, resolved)
    self._committed, self._last_checkpoint = resolved, now
    self.metrics.checkpoints += 1


WalApplier._checkpoint = _checkpoint  # type: ignore[method-assign]
