"""Mutant: the producer counts a batch's interval from its newest message instead of its first,
so a steady trickle of messages, each younger than the interval, is never published until it
stops.

Loaded with ``-p tests.mutants.producer_interval_from_newest``.
"""

from __future__ import annotations

import asyncio

from prism_testkit.patterns.producer import Producer


async def _flush_loop_from_newest(self: Producer) -> None:
    loop = asyncio.get_running_loop()
    size, interval = self.config.batch_size, self.config.batch_interval
    while True:
        while not self._buffer:
            if self.stop_requested.is_set():
                return
            self._changed.clear()
            await self._changed.wait()
        while len(self._buffer) < size and not self.stop_requested.is_set() and not self._flush_requests:
            remaining = self._buffer[-1].handed_at + interval - loop.time()  # the bug: the newest
            if remaining <= 0:
                break
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                break
        batch, self._buffer = self._buffer[:size], self._buffer[size:]
        self._in_flight = batch
        try:
            await self._publish_batch(batch)
        finally:
            self._in_flight = []


Producer._flush_loop = _flush_loop_from_newest  # type: ignore[method-assign]
