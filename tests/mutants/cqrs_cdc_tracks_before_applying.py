"""Mutant: a CDC-fed read model records the transaction's change position first, then applies
its row changes, so a read model killed mid-transaction skips the rest when it restarts.

Loaded with ``-p tests.mutants.cqrs_cdc_tracks_before_applying``; the CQRS suite's CDC tests
must report the read model as diverged from the write model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from prism_testkit.patterns.cqrs_cdc import STRIDE, CdcReadModel, RowChange
from prism_testkit.patterns.event_sourcing.views import KeyValueViews, TransactionalViews, _StampedWriter, _TxWriter


async def _track_then_apply(
    self: CdcReadModel, position: int, changes: Sequence[RowChange], commit_ts_ms: int = 0
) -> bool:
    views = self.views
    assert isinstance(views, TransactionalViews | KeyValueViews)
    if position < await views.position() // STRIDE:
        return False
    await views.kv.put(views.tracking, json.dumps((position + 1) * STRIDE).encode())  # the bug: before the views
    if isinstance(views, TransactionalViews):
        async with views.transactions.transaction() as tx:
            writer = _TxWriter(views, tx)
            for change in changes:
                await self.handler(writer, change)
    else:
        for index, change in enumerate(changes):
            await self.handler(_StampedWriter(views, position * STRIDE + index), change)
    return True


CdcReadModel.apply = _track_then_apply  # type: ignore[method-assign]
