"""Mutant: a sync-mode WAL write returns its receipt when its mutation was dead-lettered instead
of applied, so the caller believes a write took effect that never will.

Loaded with ``-p tests.mutants.wal_sync_ignores_dead_letter``.
"""

from __future__ import annotations

import asyncio
import time

from prism_testkit.patterns.wal.writer import WriteAheadLog


async def _wait_applied(self: WriteAheadLog, offset: int, *, within: float | None) -> None:
    deadline = None if within is None else time.monotonic() + within  # hand-rolled: the product's loop, mutated
    applier = self.applier
    while not applier.is_resolved(offset):
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"mutation at offset {offset} not applied within {within}s")
        if await applier.run_once(wait=0.0) == 0 and not applier.is_resolved(offset):
            await asyncio.sleep(0.005)
    # the bug: resolved is taken for applied; a dead-lettered mutation is not reported


WriteAheadLog.wait_applied = _wait_applied  # type: ignore[method-assign]
