"""Mutant: a projection's lag in seconds is measured from the *newest* unapplied event instead
of the oldest, so a read model that fell behind long ago looks only as late as the last write.

Loaded with ``-p tests.mutants.projection_lag_from_newest_event``; the event-sourcing suite must
report the lag as too small.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing import Lag, ProjectionRunner


async def _lag_from_newest(self: ProjectionRunner) -> Lag:
    position = await self.views.position()
    end = await self.store.notifications_end()
    behind = max(0, end - position)
    if behind == 0:
        return Lag(0, 0.0)
    newest = await self.store.read_notifications(end - 1, limit=1)  # the bug: the newest, not the oldest
    seconds = max(0.0, self.clock() - newest[0].event.recorded_at) if newest else 0.0
    return Lag(behind, seconds)


ProjectionRunner.lag = _lag_from_newest  # type: ignore[method-assign]
