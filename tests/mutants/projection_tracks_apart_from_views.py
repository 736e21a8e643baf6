"""Mutant: a transactional projection commits each event's view writes in a transaction of its
own and the tracking position in a separate one after the batch, so a projection that dies
mid-batch applies the events before the crash again when it restarts.

Loaded with ``-p tests.mutants.projection_tracks_apart_from_views``; the stateful
event-sourcing suite must report the read model as diverged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from prism_testkit.patterns.event_sourcing.views import ApplyOne, TransactionalViews, _TxWriter


async def _apply_then_track(self: TransactionalViews, start: int, offsets: Iterable[int], apply: ApplyOne) -> None:
    end = start
    for offset in offsets:
        async with self.transactions.transaction() as tx:  # the bug: views apart from the position
            await apply(_TxWriter(self, tx), offset)
        end = offset + 1
    await self.kv.put(self.tracking, json.dumps(end).encode())


TransactionalViews.apply_batch = _apply_then_track  # type: ignore[method-assign]
