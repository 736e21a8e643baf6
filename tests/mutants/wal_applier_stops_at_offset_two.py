"""Mutant: the WAL applier stops making progress once it reached offset 2 (a hung target, a
livelock): every mutation is in the log, none past offset 2 is ever applied.

Loaded with ``-p tests.mutants.wal_applier_stops_at_offset_two``; the stateful WAL suite must
report a liveness failure (the final drain stopped progressing short of the log's end), not a
loss: the mutations are not gone, they were never reached. The stall bound is shortened so that
shrinking, which meets the stall on every attempt, stays quick.
"""

from __future__ import annotations

from prism_testkit import patience
from prism_testkit.patterns.wal.applier import WalApplier

patience.BOUNDS["stall"] = 0.5

_real_run_once = WalApplier._run_once


async def _stops_at_two(self: WalApplier, wait: float) -> int:
    if self._position is not None and self._position >= 2:
        return 0  # the bug: no progress, ever, past offset 2
    return await _real_run_once(self, wait)


WalApplier._run_once = _stops_at_two  # type: ignore[method-assign]
