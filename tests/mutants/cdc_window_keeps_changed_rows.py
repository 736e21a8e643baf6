"""Mutant: while a snapshot window is open, a streamed change no longer drops its key from the
chunk read in the window, so at the high mark the chunk's older value is published after the
newer change (a stale row that the replica applies last).

Loaded with ``-p tests.mutants.cdc_window_keeps_changed_rows``; the CDC suite must report a
replica that diverged from the source.
"""

from __future__ import annotations

from prism_testkit.interfaces import ChangeSet
from prism_testkit.patterns.cdc import CdcConnector


async def _publish_set(self: CdcConnector, change_set: ChangeSet) -> int:
    window = self._window
    if window is not None and window.low in change_set.marks:
        window.opened = True  # the bug: the changes' keys stay in window.rows
    events = self._events(change_set)
    for event in events:
        await self._send(event)
    if events:
        self.metrics.transactions_published += 1
    self.metrics.replication_lag_seconds = max(0.0, self.clock() - change_set.commit_ts_ms / 1000)
    if window is not None and window.high in change_set.marks:
        return len(events) + await self._close_window(window, change_set)
    return len(events)


CdcConnector._publish_set = _publish_set  # type: ignore[method-assign]
