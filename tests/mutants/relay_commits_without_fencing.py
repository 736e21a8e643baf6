"""Mutant: the outbox relay moves its offset without its epoch's fence, so a relay whose lease
was taken over keeps committing: it can move the offset past records its successor has not
published yet (or back over them), and events are lost or published out of order.

Loaded with ``-p tests.mutants.relay_commits_without_fencing``; the outbox suite's lease races
must catch it.
"""

from __future__ import annotations

from prism_testkit.patterns.outbox.relay import OutboxRelay, _Offset


async def _fence_nothing(self: OutboxRelay, epoch: int) -> int:
    return _Offset.decode(await self.kv.get(self.config.offset)).offset


async def _move_unfenced(self: OutboxRelay, offset: int, epoch: int) -> bool:
    await self.kv.put(self.config.offset, _Offset(offset, epoch).encode())  # the bug: no epoch check
    return True


OutboxRelay._fence = _fence_nothing  # type: ignore[method-assign]
OutboxRelay._move_offset = _move_unfenced  # type: ignore[method-assign]
