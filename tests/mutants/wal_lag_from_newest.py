"""Mutant: the WAL's lag gauge measures the age of the newest unapplied mutation instead of the
oldest, so a backlog that has waited for hours reports the lag of the last write.

Loaded with ``-p tests.mutants.wal_lag_from_newest``.
"""

from __future__ import annotations

from contextlib import suppress

from prism_testkit.patterns.wal.codec import Mutation
from prism_testkit.patterns.wal.errors import WalCorruptEntry
from prism_testkit.patterns.wal.writer import WalGauges, WriteAheadLog


async def _gauges(self: WriteAheadLog) -> WalGauges:
    start = await self._tail_start()
    end = await self.log.end_offset(self.config.log)
    lag = 0.0
    last = await self.log.read(self.config.log, end - 1, limit=1) if end > start else []  # the bug: newest
    if last:
        with suppress(WalCorruptEntry):
            lag = max(0.0, self.clock() - Mutation.decode(last[0]).created_at)
    return WalGauges(lag, max(0, end - start))


WriteAheadLog.gauges = _gauges  # type: ignore[method-assign]
