"""Mutant: the producer's stop does not flush the partial batch at once but lets the flusher
wait out its interval, so a stop with a long interval is forced and abandons queued messages.

Loaded with ``-p tests.mutants.producer_stop_waits_for_interval``.
"""

from __future__ import annotations

import asyncio

from prism_testkit.patterns.producer import Producer


async def _drain_waiting(self: Producer) -> None:
    await asyncio.sleep(self.config.batch_interval)  # the bug: waits for the interval
    self._changed.set()
    if self._flusher is not None:
        await asyncio.wait([self._flusher])


Producer._drain = _drain_waiting  # type: ignore[method-assign]
